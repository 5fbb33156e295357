list(APPEND IMDSWATCH_SOURCES diagnoser.cpp doctor.cpp)

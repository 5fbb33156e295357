# Request classification and the Prometheus aggregator.
list(APPEND IMDSWATCH_SOURCES classify.cpp aggregator.cpp series_owner.cpp metrics_writer.cpp)

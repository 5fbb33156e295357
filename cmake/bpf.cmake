# Kernel programs: vmlinux.h from the build machine's BTF, clang -target bpf,
# then a bpftool skeleton that embeds the object in the agent.
find_program(CLANG_BPF NAMES clang clang-16 clang-15 clang-14 REQUIRED)
find_program(BPFTOOL NAMES bpftool PATHS /usr/sbin /usr/local/sbin REQUIRED)

set(BPF_OUT ${CMAKE_BINARY_DIR}/bpf)
file(MAKE_DIRECTORY ${BPF_OUT})
set(VMLINUX_BTF /sys/kernel/btf/vmlinux CACHE FILEPATH "BTF used to generate vmlinux.h")

execute_process(COMMAND uname -m OUTPUT_VARIABLE BPF_UNAME_M OUTPUT_STRIP_TRAILING_WHITESPACE)
if(BPF_UNAME_M STREQUAL "aarch64")
  set(BPF_TARGET_ARCH arm64)
else()
  set(BPF_TARGET_ARCH x86)
endif()

add_custom_command(
  OUTPUT ${BPF_OUT}/vmlinux.h
  COMMAND ${BPFTOOL} btf dump file ${VMLINUX_BTF} format c > ${BPF_OUT}/vmlinux.h
  COMMENT "Generating vmlinux.h from ${VMLINUX_BTF}")

set(BPF_SOURCES ${CMAKE_SOURCE_DIR}/bpf/imdswatch.bpf.c)
set(BPF_HEADERS ${CMAKE_SOURCE_DIR}/bpf/imdswatch.h ${CMAKE_SOURCE_DIR}/bpf/http_parse.h)

add_custom_command(
  OUTPUT ${BPF_OUT}/imdswatch.bpf.o
  COMMAND ${CLANG_BPF} -target bpf -g -O2 -Wall -D__TARGET_ARCH_${BPF_TARGET_ARCH}
          -I${BPF_OUT} -I${CMAKE_SOURCE_DIR}/bpf
          -c ${CMAKE_SOURCE_DIR}/bpf/imdswatch.bpf.c -o ${BPF_OUT}/imdswatch.bpf.o
  DEPENDS ${BPF_SOURCES} ${BPF_HEADERS} ${BPF_OUT}/vmlinux.h
  COMMENT "Compiling imdswatch.bpf.c")

add_custom_command(
  OUTPUT ${BPF_OUT}/imdswatch.skel.h
  COMMAND ${BPFTOOL} gen skeleton ${BPF_OUT}/imdswatch.bpf.o name imdswatch_bpf > ${BPF_OUT}/imdswatch.skel.h
  DEPENDS ${BPF_OUT}/imdswatch.bpf.o
  COMMENT "Generating imdswatch.skel.h")

add_custom_target(imdswatch_skel DEPENDS ${BPF_OUT}/imdswatch.skel.h)

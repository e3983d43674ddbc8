# Cross-compiling for arm64 Linux (glibc) with Debian's crossbuild-essential-arm64:
# `edge4k build-runner --target aarch64-linux` passes this file with the aarch64
# executorch wheel's CMake package. zlib comes from zlib1g-dev:arm64 (Debian multiarch)
# and is linked statically, so the runner needs no libz on the board. libjpeg (JPEG output, where
# libjpeg62-turbo-dev:arm64 is installed) is linked as the shared libjpeg.so.62 of the same multiarch
# folder: the board needs libjpeg62-turbo.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
# Programs from the host; libraries from the cross root and the multiarch folders
# (/usr/lib/aarch64-linux-gnu); the wheel's package comes by path as executorch_DIR.
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(ZLIB_USE_STATIC_LIBS ON)
# GCC notes that std::pair's parameter passing changed in GCC 10.1: nothing here
# crosses that ABI boundary.
set(CMAKE_CXX_FLAGS_INIT "-Wno-psabi")

# Third-party dependencies: LibTorch (from the torch wheel or any unpacked
# LibTorch 2.11 via Torch_DIR / CMAKE_PREFIX_PATH) and Debian's packages.

# Name the GPU architectures up front: otherwise LibTorch's CMake compiles
# and runs a probe on the build machine, which fails where there is no GPU
# (CI) or no CUDA20 dialect. 9.0 = Hopper (H100/H200), the GPU machines.
if(NOT DEFINED TORCH_CUDA_ARCH_LIST AND NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST})
  set(TORCH_CUDA_ARCH_LIST "9.0")
endif()
find_package(Torch 2.11 REQUIRED)

# The torch wheel ships no Gloo headers, yet ProcessGroupGloo.hpp includes
# them: take them from Debian's libgloo-dev (or wherever GLOO_INCLUDE_DIR says).
find_path(GLOO_INCLUDE_DIR gloo/config.h
  HINTS ENV GLOO_INCLUDE_DIR
  DOC "Directory holding gloo/config.h (Debian: libgloo-dev)")
if(NOT GLOO_INCLUDE_DIR)
  message(FATAL_ERROR "Gloo headers not found: install libgloo-dev or pass -DGLOO_INCLUDE_DIR=<dir containing gloo/config.h>")
endif()

# LibTorch's CUDA build (the wheel) carries ProcessGroupNCCL in libtorch_cuda.
set(ACCEL_WITH_CUDA OFF)
if(TARGET torch_cuda OR TORCH_CUDA_LIBRARIES OR CUDA_FOUND OR CUDAToolkit_FOUND)
  set(ACCEL_WITH_CUDA ON)
endif()
message(STATUS "accel: LibTorch ${Torch_VERSION}, CUDA support ${ACCEL_WITH_CUDA}, Gloo headers ${GLOO_INCLUDE_DIR}")

find_package(nlohmann_json 3.10 REQUIRED)
find_package(yaml-cpp REQUIRED)
if(TARGET yaml-cpp::yaml-cpp)
  set(ACCEL_YAML_TARGET yaml-cpp::yaml-cpp)
else()
  set(ACCEL_YAML_TARGET yaml-cpp)
endif()
find_package(CLI11 REQUIRED)
find_package(Threads REQUIRED)
if(ACCEL_BUILD_TESTS)
  find_package(GTest REQUIRED)
  include(GoogleTest)
endif()
if(ACCEL_BUILD_BENCH)
  find_package(benchmark REQUIRED)
endif()

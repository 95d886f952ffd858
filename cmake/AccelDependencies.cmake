# Third-party dependencies: LibTorch (from the torch wheel or any unpacked
# LibTorch 2.11 via Torch_DIR / CMAKE_PREFIX_PATH) and Debian's packages.

include(AccelTorch)

# The torch wheel ships no Gloo headers, yet ProcessGroupGloo.hpp includes
# them: take them from Debian's libgloo-dev (or wherever GLOO_INCLUDE_DIR says).
find_path(GLOO_INCLUDE_DIR gloo/config.h
  HINTS ENV GLOO_INCLUDE_DIR
  DOC "Directory holding gloo/config.h (Debian: libgloo-dev)")
if(NOT GLOO_INCLUDE_DIR)
  message(FATAL_ERROR "Gloo headers not found: install libgloo-dev or pass -DGLOO_INCLUDE_DIR=<dir containing gloo/config.h>")
endif()

message(STATUS "accel: LibTorch ${ACCEL_TORCH_VERSION} (${ACCEL_TORCH_ROOT}), CUDA support ${ACCEL_WITH_CUDA}, Gloo headers ${GLOO_INCLUDE_DIR}")

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

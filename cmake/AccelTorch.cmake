# LibTorch as the imported target accel::libtorch, without LibTorch's own
# CMake package.
#
# Why not find_package(Torch): the torch wheel is a CUDA build, and its
# Caffe2Config.cmake stops at configure time unless a CUDA toolkit is
# installed (then it also compiles and runs a GPU-architecture probe). A
# user's machine usually has no toolkit, yet the wheel already carries all
# that a C++ program built on LibTorch needs: LibTorch's headers and
# libraries, and (in the nvidia/* wheels beside it) the CUDA runtime and NCCL
# headers and libraries. Importing those ourselves gives one build on every
# machine: CUDA support is compiled in wherever libtorch_cuda is present, with
# or without a toolkit, and a CPU-only LibTorch builds a CPU-only accel.
# accel's own build and `find_package(accel)` in a user's project both come
# through this file, so both configure the same way.
#
# Where LibTorch is looked for, first match wins:
#   Torch_DIR (the folder holding TorchConfig.cmake), then each entry of
#   CMAKE_PREFIX_PATH (the wheel's torch.utils.cmake_prefix_path, or an
#   unpacked LibTorch's root), then ACCEL_TORCH_HINT (the folder accel was
#   built against, recorded by accelConfig.cmake).
# Sets: ACCEL_TORCH_ROOT, ACCEL_TORCH_LIB_DIR, ACCEL_TORCH_VERSION,
# ACCEL_TORCH_CMAKE_DIR, ACCEL_WITH_CUDA, TORCH_LIBRARY (libtorch.so) and
# ACCEL_TORCH_RUNTIME_DIRS (the folders installed binaries need in their run
# path: a run path is not inherited by the libraries a program loads).
include_guard(GLOBAL)

set(ACCEL_TORCH_VERSION_REQUIRED 2.11)

function(_accel_find_torch_cmake_dir out)
  set(candidates)
  if(Torch_DIR)
    list(APPEND candidates "${Torch_DIR}")
  endif()
  if(DEFINED ENV{Torch_DIR})
    list(APPEND candidates "$ENV{Torch_DIR}")
  endif()
  foreach(prefix IN LISTS CMAKE_PREFIX_PATH)
    list(APPEND candidates "${prefix}" "${prefix}/Torch" "${prefix}/share/cmake/Torch")
  endforeach()
  if(ACCEL_TORCH_HINT)
    list(APPEND candidates "${ACCEL_TORCH_HINT}")
  endif()
  foreach(dir IN LISTS candidates)
    if(EXISTS "${dir}/TorchConfigVersion.cmake")
      get_filename_component(dir "${dir}" ABSOLUTE)
      set(${out} "${dir}" PARENT_SCOPE)
      return()
    endif()
  endforeach()
  string(REPLACE ";" "\n    " tried "${candidates}")
  message(FATAL_ERROR
    "accel: LibTorch ${ACCEL_TORCH_VERSION_REQUIRED} not found. Looked for TorchConfigVersion.cmake in:\n"
    "    ${tried}\n"
    "Pass -DCMAKE_PREFIX_PATH=$(python -c 'import torch.utils; print(torch.utils.cmake_prefix_path)') "
    "or -DTorch_DIR=<libtorch>/share/cmake/Torch.")
endfunction()

if(NOT TARGET accel::libtorch)
  _accel_find_torch_cmake_dir(ACCEL_TORCH_CMAKE_DIR)
  get_filename_component(ACCEL_TORCH_ROOT "${ACCEL_TORCH_CMAKE_DIR}/../../.." ABSOLUTE)
  # What an installed tree records (run paths, accelConfig's hint) is the
  # real path: a clone's .venv link disappears with the clone, the cached
  # environment it points to does not.
  get_filename_component(ACCEL_TORCH_CMAKE_REALPATH "${ACCEL_TORCH_CMAKE_DIR}" REALPATH)
  set(ACCEL_TORCH_LIB_DIR "${ACCEL_TORCH_ROOT}/lib")

  file(STRINGS "${ACCEL_TORCH_CMAKE_DIR}/TorchConfigVersion.cmake" _version_line
       REGEX "set\\(PACKAGE_VERSION \"[0-9.]+\"\\)")
  string(REGEX MATCH "[0-9]+\\.[0-9]+\\.[0-9]+" ACCEL_TORCH_VERSION "${_version_line}")
  string(REGEX MATCH "^[0-9]+\\.[0-9]+" _major_minor "${ACCEL_TORCH_VERSION}")
  if(NOT _major_minor VERSION_EQUAL ACCEL_TORCH_VERSION_REQUIRED)
    message(FATAL_ERROR "accel: LibTorch at ${ACCEL_TORCH_ROOT} is version '${ACCEL_TORCH_VERSION}', "
                        "expected ${ACCEL_TORCH_VERSION_REQUIRED}.x")
  endif()

  # One imported target per library: CMake then puts their folder in the
  # build tree's run path and, with CMAKE_INSTALL_RPATH_USE_LINK_PATH, in the
  # installed one's.
  function(_accel_import_torch_library name)
    set(path "${ACCEL_TORCH_LIB_DIR}/lib${name}.so")
    if(NOT EXISTS "${path}")
      message(FATAL_ERROR "accel: ${path} is missing: the LibTorch at ${ACCEL_TORCH_ROOT} is incomplete")
    endif()
    add_library(accel::torch_${name} SHARED IMPORTED GLOBAL)
    set_target_properties(accel::torch_${name} PROPERTIES IMPORTED_LOCATION "${path}" IMPORTED_NO_SONAME OFF)
  endfunction()
  foreach(lib torch torch_cpu c10)
    _accel_import_torch_library(${lib})
  endforeach()
  set(TORCH_LIBRARY "${ACCEL_TORCH_LIB_DIR}/libtorch.so")

  add_library(accel::libtorch INTERFACE IMPORTED GLOBAL)
  target_include_directories(accel::libtorch SYSTEM INTERFACE
    "${ACCEL_TORCH_ROOT}/include" "${ACCEL_TORCH_ROOT}/include/torch/csrc/api/include")
  # The wheel is built with the C++11 ABI, and its operator registrations
  # live in libtorch_cpu/libtorch_cuda, which a program may reference by no
  # symbol at all: they must stay linked under --as-needed (Ubuntu's
  # default), as LibTorch's own config ensures. One item per library, with
  # the state pushed and popped inside it: CMake reorders and merges link
  # items, so separate -Wl,--no-as-needed / -Wl,--as-needed flags would not
  # stay around the library. The targets themselves are linked too, for the
  # run path.
  function(_accel_keep_linked lib)
    target_link_libraries(accel::libtorch INTERFACE
      "-Wl,--push-state,--no-as-needed,${ACCEL_TORCH_LIB_DIR}/lib${lib}.so,--pop-state" accel::torch_${lib})
  endfunction()
  target_compile_definitions(accel::libtorch INTERFACE _GLIBCXX_USE_CXX11_ABI=1)
  _accel_keep_linked(torch_cpu)
  _accel_keep_linked(torch)
  target_link_libraries(accel::libtorch INTERFACE accel::torch_c10)
  get_filename_component(_torch_lib_real "${ACCEL_TORCH_LIB_DIR}" REALPATH)
  set(ACCEL_TORCH_RUNTIME_DIRS "${_torch_lib_real}")

  # CUDA: wherever LibTorch has libtorch_cuda. The headers its CUDA headers
  # include (cuda_runtime_api.h, nccl.h) and the runtime library come from
  # the wheel's nvidia/* siblings when present (the versions LibTorch was
  # built with), else from an installed toolkit.
  set(ACCEL_WITH_CUDA OFF)
  if(EXISTS "${ACCEL_TORCH_LIB_DIR}/libtorch_cuda.so")
    get_filename_component(_nvidia "${ACCEL_TORCH_ROOT}/../nvidia" ABSOLUTE)
    set(_cuda_include_hints "${_nvidia}/cu13/include" "${_nvidia}/cuda_runtime/include")
    set(_cuda_lib_hints "${_nvidia}/cu13/lib" "${_nvidia}/cuda_runtime/lib")
    find_package(CUDAToolkit QUIET)
    if(CUDAToolkit_FOUND)
      list(APPEND _cuda_include_hints ${CUDAToolkit_INCLUDE_DIRS})
      list(APPEND _cuda_lib_hints ${CUDAToolkit_LIBRARY_DIR})
    endif()
    # LibTorch's CUDA headers need the runtime's own (cuda_runtime_api.h),
    # crt/host_config.h and CCCL's <nv/target>; the wheels carry the last two
    # only with nvidia-cuda-crt and nvidia-cuda-cccl (requirements.txt). The
    # first folder holding all three wins: the wheels', then a toolkit's.
    if(NOT ACCEL_CUDA_INCLUDE_DIR)
      foreach(dir IN LISTS _cuda_include_hints CMAKE_SYSTEM_INCLUDE_PATH ITEMS /usr/local/cuda/include /usr/include)
        if(EXISTS "${dir}/cuda_runtime_api.h" AND EXISTS "${dir}/crt/host_config.h" AND EXISTS "${dir}/nv/target")
          set(ACCEL_CUDA_INCLUDE_DIR "${dir}" CACHE PATH "CUDA runtime headers (with crt/ and nv/target)")
          break()
        endif()
      endforeach()
    endif()
    find_path(ACCEL_NCCL_INCLUDE_DIR nccl.h HINTS "${_nvidia}/nccl/include" ${_cuda_include_hints} NO_DEFAULT_PATH)
    find_path(ACCEL_NCCL_INCLUDE_DIR nccl.h)
    find_library(ACCEL_CUDART_LIBRARY NAMES libcudart.so.13 cudart HINTS ${_cuda_lib_hints} NO_DEFAULT_PATH)
    find_library(ACCEL_CUDART_LIBRARY NAMES libcudart.so.13 cudart)
    # cuBLASLt (the GEMM epilogues of accel's ops): the one LibTorch loads.
    find_library(ACCEL_CUBLASLT_LIBRARY NAMES libcublasLt.so.13 cublasLt HINTS ${_cuda_lib_hints} NO_DEFAULT_PATH)
    find_library(ACCEL_CUBLASLT_LIBRARY NAMES libcublasLt.so.13 cublasLt)
    if(ACCEL_CUDA_INCLUDE_DIR AND ACCEL_NCCL_INCLUDE_DIR AND ACCEL_CUDART_LIBRARY)
      set(ACCEL_WITH_CUDA ON)
      foreach(lib torch_cuda c10_cuda)
        _accel_import_torch_library(${lib})
      endforeach()
      add_library(accel::cudart SHARED IMPORTED GLOBAL)
      set_target_properties(accel::cudart PROPERTIES IMPORTED_LOCATION "${ACCEL_CUDART_LIBRARY}")
      target_include_directories(accel::libtorch SYSTEM INTERFACE "${ACCEL_CUDA_INCLUDE_DIR}" "${ACCEL_NCCL_INCLUDE_DIR}")
      _accel_keep_linked(torch_cuda)
      target_link_libraries(accel::libtorch INTERFACE accel::torch_c10_cuda accel::cudart)
      get_filename_component(_cudart_dir "${ACCEL_CUDART_LIBRARY}" REALPATH)
      get_filename_component(_cudart_dir "${_cudart_dir}" DIRECTORY)
      list(APPEND ACCEL_TORCH_RUNTIME_DIRS "${_cudart_dir}")
    else()
      message(WARNING "accel: LibTorch at ${ACCEL_TORCH_ROOT} is a CUDA build, but the CUDA headers or runtime "
                      "were not found (cuda_runtime_api.h with crt/host_config.h and nv/target: ${ACCEL_CUDA_INCLUDE_DIR}, "
                      "nccl.h: ${ACCEL_NCCL_INCLUDE_DIR}, cudart: ${ACCEL_CUDART_LIBRARY}); building without CUDA "
                      "support. `pip install nvidia-cuda-crt==13.0.88 nvidia-cuda-cccl==13.0.85` beside the wheel, or a CUDA 13 toolkit, "
                      "gives them")
    endif()
  endif()
endif()

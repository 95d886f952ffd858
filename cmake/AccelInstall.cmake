# `cmake --install` gives another project `find_package(accel)` and the
# target accel::accel.
include(CMakePackageConfigHelpers)
install(TARGETS accel EXPORT accelTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY include/accel DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT accelTargets NAMESPACE accel:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/accel)
configure_package_config_file(cmake/accelConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/accelConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/accel)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/accelConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/accelConfig.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/accelConfigVersion.cmake
              ${PROJECT_SOURCE_DIR}/cmake/AccelTorch.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/accel)

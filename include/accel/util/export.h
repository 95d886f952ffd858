#pragma once
// ACCEL_API marks what libaccel.so exports: the classes and free functions
// of accel's public headers. The library is compiled with hidden visibility
// (-fvisibility=hidden -fvisibility-inlines-hidden), as LibTorch (TORCH_API)
// and MLX are, so that what is not marked stays inside it: helpers of the
// .cpp files and the LibTorch and standard-library template code the library
// instantiates. Fewer exported symbols load faster, and a program cannot come
// to depend on what accel does not promise.
//
//   class ACCEL_API GradScaler { ... };      // its members, vtable and typeinfo
//   ACCEL_API void set_seed(uint64_t seed);  // one function
//
// Templates, inline functions and constants in headers need no mark: they
// are compiled into the program that uses them. A class thrown across the
// boundary (RendezvousError) is marked even when all its members are inline,
// so that a program's catch and the library's throw share one typeinfo.
//
// The standard attribute spelling, not __attribute__((...)), so that it can
// stand beside [[nodiscard]] (class ACCEL_API [[nodiscard]] GoesFirst). On
// ELF the same spelling serves building and using the library, so no define
// tells them apart (one would also make the precompiled header unusable by
// the targets that share it).
#define ACCEL_API [[gnu::visibility("default")]]

# Find every third-party dependency; when one is missing stop with the name
# of the Debian package that provides it (tools/install-deps installs all).
include(FindPkgConfig)

set(TLCM_MISSING_PACKAGES "")

# tlcm_find_lib(TARGET HEADER LIBNAME DEBIAN_PACKAGE)
# Defines the imported target tlcm::TARGET.
function(tlcm_find_lib target header libname debpkg)
  find_path(${target}_INCLUDE_DIR ${header})
  find_library(${target}_LIBRARY NAMES ${libname})
  if(NOT ${target}_INCLUDE_DIR OR NOT ${target}_LIBRARY)
    message(SEND_ERROR
      "TinyLCM needs ${target} (${header}, lib${libname}): "
      "install the Debian package '${debpkg}' (or run tools/install-deps)")
    set(TLCM_MISSING_PACKAGES "${TLCM_MISSING_PACKAGES} ${debpkg}"
        PARENT_SCOPE)
    return()
  endif()
  add_library(tlcm::${target} UNKNOWN IMPORTED GLOBAL)
  set_target_properties(tlcm::${target} PROPERTIES
    IMPORTED_LOCATION ${${target}_LIBRARY}
    INTERFACE_INCLUDE_DIRECTORIES ${${target}_INCLUDE_DIR})
endfunction()

tlcm_find_lib(uring       liburing.h          uring        liburing-dev)
tlcm_find_lib(nng         nng/nng.h           nng          libnng-dev)
tlcm_find_lib(rocksdb     rocksdb/c.h         rocksdb      librocksdb-dev)
tlcm_find_lib(xnnpack     xnnpack.h           XNNPACK      libxnnpack-dev)
tlcm_find_lib(pthreadpool pthreadpool.h       pthreadpool  libpthreadpool-dev)
tlcm_find_lib(cpuinfo     cpuinfo.h           cpuinfo      libcpuinfo-dev)
tlcm_find_lib(curl        curl/curl.h         curl         libcurl4-openssl-dev)
tlcm_find_lib(fyaml       libfyaml.h          fyaml        libfyaml-dev)
tlcm_find_lib(cjson       cjson/cJSON.h       cjson        libcjson-dev)
tlcm_find_lib(zstd        zstd.h              zstd         libzstd-dev)
tlcm_find_lib(sodium      sodium.h            sodium       libsodium-dev)
tlcm_find_lib(zlib        zlib.h              z            zlib1g-dev)
tlcm_find_lib(png         png.h               png          libpng-dev)
tlcm_find_lib(jpeg        jpeglib.h           jpeg         libjpeg62-turbo-dev)
# the core checks its TLS certificate and key as NNG's TLS engine reads them
tlcm_find_lib(mbedx509    mbedtls/x509_crt.h  mbedx509     libmbedtls-dev)
tlcm_find_lib(mbedcrypto  mbedtls/pk.h        mbedcrypto   libmbedtls-dev)
# discovery: DNS-SD over mDNS through avahi-daemon
tlcm_find_lib(avahiclient avahi-client/client.h avahi-client libavahi-client-dev)
tlcm_find_lib(avahicommon avahi-common/error.h  avahi-common libavahi-client-dev)
# sensor.modbus: Modbus TCP register polling (and its test server)
tlcm_find_lib(modbus      modbus/modbus.h     modbus       libmodbus-dev)

find_program(FLATC flatc)
if(NOT FLATC)
  message(SEND_ERROR "TinyLCM needs flatc: install the Debian package "
                     "'flatbuffers-compiler' (or run tools/install-deps)")
  set(TLCM_MISSING_PACKAGES "${TLCM_MISSING_PACKAGES} flatbuffers-compiler")
endif()

# Debian's python3 sees Debian's python3-* modules; a python3 earlier on PATH
# may not, so tests name it explicitly.
find_program(TLCM_PYTHON NAMES python3 PATHS /usr/bin NO_DEFAULT_PATH)
if(NOT TLCM_PYTHON)
  message(SEND_ERROR "TinyLCM tests need /usr/bin/python3: install the "
                     "Debian package 'python3'")
  set(TLCM_MISSING_PACKAGES "${TLCM_MISSING_PACKAGES} python3")
endif()

if(TLCM_MISSING_PACKAGES)
  message(FATAL_ERROR "Missing Debian packages:${TLCM_MISSING_PACKAGES}\n"
                      "Install them with: sudo apt-get install"
                      "${TLCM_MISSING_PACKAGES}")
endif()

find_package(Threads REQUIRED)

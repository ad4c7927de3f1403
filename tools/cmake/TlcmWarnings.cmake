# Warning flags and sanitizer instrumentation for every target.
add_compile_options(-Wall -Wextra -Wshadow -Wstrict-prototypes
                    -Wmissing-prototypes -Wno-unused-parameter
                    -Wformat=2 -Wvla -fno-common)
if(TLCM_WERROR)
  add_compile_options(-Werror)
endif()

if(TLCM_SANITIZE)
  if(TLCM_SANITIZE STREQUAL "thread")
    set(_san -fsanitize=thread)
  elseif(TLCM_SANITIZE STREQUAL "address,undefined")
    set(_san -fsanitize=address,undefined -fno-sanitize-recover=undefined)
  else()
    message(FATAL_ERROR
      "TLCM_SANITIZE='${TLCM_SANITIZE}': use 'address,undefined' or 'thread'")
  endif()
  add_compile_options(${_san} -fno-omit-frame-pointer -g)
  add_link_options(${_san})
  add_compile_definitions(TLCM_SANITIZED=1)
endif()

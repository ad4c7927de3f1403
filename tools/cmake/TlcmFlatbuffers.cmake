# tlcm_flatbuffers(TARGET SCHEMA.fbs...)
#
# For each schema: flatc --schema -b → gen/bfbs/X.bfbs, then tinylcm-fbgen →
# gen/fb/X_fb.h. TARGET is an INTERFACE library that depends on the headers;
# link it to use them (#include "fb/X_fb.h"). Schemas may include each other
# from the same directory.
function(tlcm_flatbuffers target)
  set(bfbs_dir ${CMAKE_BINARY_DIR}/gen/bfbs)
  set(fb_dir ${CMAKE_BINARY_DIR}/gen/fb)
  file(MAKE_DIRECTORY ${bfbs_dir} ${fb_dir})
  set(headers "")
  foreach(schema ${ARGN})
    get_filename_component(abs ${schema} ABSOLUTE)
    get_filename_component(stem ${schema} NAME_WE)
    get_filename_component(dir ${abs} DIRECTORY)
    file(GLOB siblings ${dir}/*.fbs)
    add_custom_command(
      OUTPUT ${fb_dir}/${stem}_fb.h
      COMMAND ${FLATC} --schema -b -I ${dir} -o ${bfbs_dir} ${abs}
      COMMAND tinylcm-fbgen -o ${fb_dir} ${bfbs_dir}/${stem}.bfbs
      DEPENDS ${abs} ${siblings} tinylcm-fbgen
      COMMENT "FlatBuffers C: ${stem}.fbs"
      VERBATIM)
    list(APPEND headers ${fb_dir}/${stem}_fb.h)
  endforeach()
  add_custom_target(${target}_gen DEPENDS ${headers})
  add_library(${target} INTERFACE)
  add_dependencies(${target} ${target}_gen)
endfunction()

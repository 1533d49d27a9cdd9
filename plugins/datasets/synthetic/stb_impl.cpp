// Used only when Debian's libstb.so is absent (see CMakeLists.txt): the one translation unit that compiles
// stb_image and stb_image_write into mmr_synthetic.
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image.h>
#include <stb/stb_image_write.h>

/* Writes the small GIF, BMP and WebP seeds of fuzz/corpus (the fixtures hold no such files) and
 * an RGBA PNG: gcc fuzz/make_image_seeds.c -lwebp -o /tmp/seeds && /tmp/seeds fuzz/corpus
 * BMP and PNG through stb_image_write (libstb-dev), WebP through libwebp's encoder, GIF as literal bytes. */
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>
#include <webp/encode.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void write_file(const char* dir, const char* name, const void* bytes, size_t n) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE* f = fopen(path, "wb");
  if (!f || fwrite(bytes, 1, n, f) != n) { perror(path); exit(1); }
  fclose(f);
}

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  char dir[400];
  enum { W = 7, H = 5 };
  unsigned char rgba[W * H * 4];
  for (int i = 0; i < W * H; ++i) {
    rgba[i * 4 + 0] = (unsigned char)(i * 37);
    rgba[i * 4 + 1] = (unsigned char)(i * 11 + 80);
    rgba[i * 4 + 2] = (unsigned char)(255 - i * 5);
    rgba[i * 4 + 3] = (unsigned char)(i % 3 ? 255 : 128);
  }
  snprintf(dir, sizeof dir, "%s/fuzz_image_bmp", argv[1]);
  char path[512];
  snprintf(path, sizeof path, "%s/rgb.bmp", dir);
  stbi_write_bmp(path, W, H, 3, rgba);  /* stb reads 3 of every 4 bytes as RGB: the pattern stays varied */
  snprintf(path, sizeof path, "%s/rgba.bmp", dir);
  stbi_write_bmp(path, W, H, 4, rgba);
  snprintf(dir, sizeof dir, "%s/fuzz_image_png", argv[1]);
  snprintf(path, sizeof path, "%s/rgba.png", dir);
  stbi_write_png(path, W, H, 4, rgba, W * 4);

  snprintf(dir, sizeof dir, "%s/fuzz_image_webp", argv[1]);
  uint8_t* out = NULL;
  size_t n = WebPEncodeRGBA(rgba, W, H, W * 4, 80, &out);
  write_file(dir, "lossy_alpha.webp", out, n);
  WebPFree(out);
  n = WebPEncodeLosslessRGBA(rgba, W, H, W * 4, &out);
  write_file(dir, "lossless.webp", out, n);
  WebPFree(out);
  n = WebPEncodeRGB(rgba, W, H, W * 3, 50, &out);  /* any W*3 bytes per row: only the format matters */
  write_file(dir, "lossy.webp", out, n);
  WebPFree(out);

  /* A 2x2 GIF89a: 4-colour global palette, a graphic control extension with a transparent index, LZW data. */
  static const unsigned char gif[] = {
      'G', 'I', 'F', '8', '9', 'a', 2, 0, 2, 0, 0x81, 0, 0,
      0xff, 0, 0, 0, 0xff, 0, 0, 0, 0xff, 0xff, 0xff, 0xff,
      0x21, 0xf9, 4, 1, 0, 0, 3, 0,
      0x2c, 0, 0, 0, 0, 2, 0, 2, 0, 0,
      2, 3, 0x44, 0x34, 0x05, 0, 0x3b};
  snprintf(dir, sizeof dir, "%s/fuzz_image_gif", argv[1]);
  write_file(dir, "2x2.gif", gif, sizeof gif);
  return 0;
}

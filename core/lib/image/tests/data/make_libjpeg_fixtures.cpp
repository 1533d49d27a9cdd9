// Makes the libjpeg reference fixtures in this folder (not built by CMake; run by hand when they must change):
//   g++ -std=c++17 -I<repo> make_libjpeg_fixtures.cpp <repo>/core/lib/safetensors/{safetensors,writer}.cpp \
//       -ljpeg -lfmt -lspdlog -pthread && ./a.out
// Encodes a synthetic 37x29 pattern with libjpeg in every chroma sampling we handle specially (plus progressive and
// greyscale) and stores libjpeg's own decode (default settings, as PIL uses it) in libjpeg_decoded.safetensors,
// so test_image can check our decoder against libjpeg without linking it.
#include <cstddef>
#include <cstdio>
#include <jpeglib.h>
#include <cmath>
#include <vector>
#include <random>
#include <string>
#include "core/lib/image/image.h"
#include "core/lib/safetensors/safetensors.h"
using namespace mmr::image;
RgbImage dec_libjpeg(const unsigned char* buf, size_t n){
  jpeg_decompress_struct c; jpeg_error_mgr e; c.err=jpeg_std_error(&e); jpeg_create_decompress(&c);
  jpeg_mem_src(&c,buf,n); jpeg_read_header(&c,TRUE); c.out_color_space = JCS_RGB;
  jpeg_start_decompress(&c);
  RgbImage im; im.width=c.output_width; im.height=c.output_height; im.pixels.resize(im.width*im.height*3);
  while(c.output_scanline<c.output_height){ JSAMPROW r=&im.pixels[c.output_scanline*im.width*3]; jpeg_read_scanlines(&c,&r,1);} 
  jpeg_finish_decompress(&c); jpeg_destroy_decompress(&c); return im;}
std::vector<unsigned char> enc(int w,int h,int comps,int hs,int vs,bool prog,int q,unsigned seed){
  std::mt19937 rng(seed); std::vector<unsigned char> px(w*h*comps);
  for(int y=0;y<h;y++)for(int x=0;x<w;x++)for(int c=0;c<comps;c++){ double v=128+100*std::sin(0.07*x*(c+1)+0.05*y)+ (rng()%40)-20; px[(y*w+x)*comps+c]=(unsigned char)std::max(0.0,std::min(255.0,v));}
  jpeg_compress_struct c; jpeg_error_mgr e; c.err=jpeg_std_error(&e); jpeg_create_compress(&c);
  unsigned char* out=nullptr; unsigned long sz=0; jpeg_mem_dest(&c,&out,&sz);
  c.image_width=w; c.image_height=h; c.input_components=comps; c.in_color_space= comps==3?JCS_RGB:JCS_GRAYSCALE;
  jpeg_set_defaults(&c); jpeg_set_quality(&c,q,TRUE);
  if(comps==3){ c.comp_info[0].h_samp_factor=hs; c.comp_info[0].v_samp_factor=vs; for(int k=1;k<3;k++){c.comp_info[k].h_samp_factor=1;c.comp_info[k].v_samp_factor=1;}}
  if(prog) jpeg_simple_progression(&c);
  jpeg_start_compress(&c,TRUE); while(c.next_scanline<c.image_height){ JSAMPROW r=&px[c.next_scanline*w*comps]; jpeg_write_scanlines(&c,&r,1);} jpeg_finish_compress(&c); jpeg_destroy_compress(&c);
  std::vector<unsigned char> v(out,out+sz); free(out); return v;}
int main(){
  std::string dir="./";
  struct S{const char* name; int comps,hs,vs; bool prog;} specs[]={{"h1v1",3,1,1,false},{"h2v1",3,2,1,false},{"h1v2",3,1,2,false},{"h2v2",3,2,2,false},{"h2v2_progressive",3,2,2,true},{"gray",1,1,1,false}};
  mmr::safetensors::Writer w; std::vector<std::vector<unsigned char>> keep;
  int i=0; for(auto& s:specs){ auto b=enc(37,29,s.comps,s.hs,s.vs,s.prog,85,100+i++); std::string p=dir+"libjpeg_"+s.name+".jpg"; FILE* f=fopen(p.c_str(),"wb"); fwrite(b.data(),1,b.size(),f); fclose(f);
    RgbImage a=dec_libjpeg(b.data(),b.size()); keep.push_back(a.pixels); w.add(std::string(s.name), mmr::safetensors::Dtype::U8, {a.height,a.width,3}, a.pixels.data(), a.pixels.size()); printf("%s %zu bytes\n", s.name, b.size()); }
  w.set_metadata({{"producer","libjpeg-turbo 2.1.5 (Debian 12 libjpeg62-turbo), jpeg_read_scanlines with default settings (islow IDCT, fancy upsampling), out_color_space JCS_RGB"},{"images","libjpeg_<key>.jpg in this folder, encoded by the same libjpeg at quality 85 from a synthetic 37x29 pattern"}});
  w.write(dir+"libjpeg_decoded.safetensors");
}

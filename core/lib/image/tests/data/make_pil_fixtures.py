"""Makes the Pillow reference fixtures in this folder (run by hand when they must change, with Debian 12's
python3-pil, Pillow 9.4.0 over libjpeg-turbo 2.1.5):  python3 make_pil_fixtures.py

pil_cmyk.jpg: a 37x29 CMYK JPEG (Pillow writes an Adobe marker, no colour transform); pil_cmyk_rgb.ppm: what
Image.open(...).convert('RGB') gives for it, the CMYK path test_image checks (PIL's "CMYK;I" raw mode and its
cmyk2rgb formula, which stb_image's CMYK conversion missed by one grey level on 42 of its 1073 pixels).
"""
from PIL import Image

image = Image.new("RGB", (37, 29))
image.putdata([((x * 7 + y * 3) % 256, (x * y * 5) % 256, (255 - x * 5 + y * 2) % 256)
               for y in range(29) for x in range(37)])
image.convert("CMYK").save("pil_cmyk.jpg", quality=90)
Image.open("pil_cmyk.jpg").convert("RGB").save("pil_cmyk_rgb.ppm")

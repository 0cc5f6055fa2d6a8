"""Writes the two small JPEG variants the Rust encoder cannot produce (progressive and CMYK)
into tests/data/. Run once with Pillow installed; the outputs are committed (about 1 KB each).
Both show the same picture: left half red, right half blue, 32x16 pixels."""
from pathlib import Path
from PIL import Image

out = Path(__file__).resolve().parent.parent / "tests" / "data"
out.mkdir(parents=True, exist_ok=True)
img = Image.new("RGB", (32, 16))
for x in range(32):
    for y in range(16):
        img.putpixel((x, y), (220, 20, 20) if x < 16 else (20, 20, 220))
img.save(out / "progressive.jpg", quality=95, progressive=True)
img.convert("CMYK").save(out / "cmyk.jpg", quality=95)

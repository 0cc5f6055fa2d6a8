//! Whether a JPEG's data reaches its end. The decoder fills a JPEG cut short (an interrupted
//! download or copy) with grey and reports success; Pillow, and so Keras, refuse such a file
//! ("image file is truncated"), and a half-grey face is a mislabelled example. So the file's
//! structure is walked first: marker segments by their lengths (an EXIF thumbnail's own
//! end marker is skipped with its segment), entropy-coded scans byte by byte (0xFF is
//! stuffed there, so a marker cannot be mistaken), until the end-of-image marker.

/// Ok when the data reaches the end-of-image marker (bytes after it are allowed, as phones
/// append data there); Err says where it stopped.
pub fn check(bytes: &[u8]) -> Result<(), String> {
    let n = bytes.len();
    if n < 4 || bytes[0] != 0xFF || bytes[1] != 0xD8 {
        return Err("no start-of-image marker".into());
    }
    let mut i = 2;
    loop {
        // a marker: 0xFF, any number of fill bytes 0xFF, then its code
        if i >= n {
            return Err(format!(
                "the data ends after {n} bytes, before the end-of-image marker"
            ));
        }
        if bytes[i] != 0xFF {
            // stray bytes before a marker: decoders skip them (libjpeg warns), so do we
            match memchr::memchr(0xFF, &bytes[i..]) {
                Some(k) => i += k,
                None => {
                    return Err(format!(
                        "the data ends after {n} bytes, before the end-of-image marker"
                    ));
                }
            }
        }
        while i < n && bytes[i] == 0xFF {
            i += 1;
        }
        let Some(&code) = bytes.get(i) else {
            continue;
        };
        i += 1;
        match code {
            0xD9 => return Ok(()),
            // restart markers and TEM stand alone
            0xD0..=0xD7 | 0x01 => {}
            _ => {
                let Some(len) = bytes
                    .get(i..i + 2)
                    .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
                else {
                    continue;
                };
                // a length below 2 is damage the decoder has already accepted: step over it
                i += len.max(2);
                if code == 0xDA {
                    i = scan_end(bytes, i);
                }
            }
        }
    }
}

/// The index of the first marker after entropy-coded data starting at `i` (or `bytes.len()`).
fn scan_end(bytes: &[u8], mut i: usize) -> usize {
    while let Some(k) = bytes.get(i..).and_then(|rest| memchr::memchr(0xFF, rest)) {
        let at = i + k;
        match bytes.get(at + 1) {
            // a stuffed 0xFF, or a restart marker inside the scan
            Some(0x00) | Some(0xD0..=0xD7) => i = at + 2,
            // fill bytes before a marker
            Some(0xFF) => i = at + 1,
            Some(_) => return at,
            None => return bytes.len(),
        }
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(progressive: bool) -> Vec<u8> {
        if progressive {
            let fixture =
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/progressive.jpg");
            return std::fs::read(fixture).expect("progressive fixture");
        }
        let img = image::RgbImage::from_fn(40, 30, |x, y| {
            image::Rgb([(x * 6) as u8, (y * 8) as u8, 0xFF])
        });
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
            .encode_image(&img)
            .expect("encode");
        out
    }

    #[test]
    fn whole_files_pass_with_or_without_trailing_data() {
        for progressive in [false, true] {
            let mut b = jpeg(progressive);
            assert_eq!(check(&b), Ok(()));
            b.extend_from_slice(b"appended by a phone\xff\xd8junk");
            assert_eq!(check(&b), Ok(()));
        }
    }

    #[test]
    fn every_cut_is_caught() {
        for progressive in [false, true] {
            let b = jpeg(progressive);
            for cut in 0..b.len() - 1 {
                assert!(
                    check(&b[..cut]).is_err(),
                    "cut at {cut} of {} passed",
                    b.len()
                );
            }
        }
    }

    #[test]
    fn an_end_marker_inside_a_segment_does_not_count() {
        // an APP1 segment holding a thumbnail's end marker, then the data cut short
        let b = jpeg(false);
        let mut crafted = b[..2].to_vec();
        crafted.extend_from_slice(&[0xFF, 0xE1, 0x00, 0x06, 0xFF, 0xD9, 0x00, 0x00]);
        crafted.extend_from_slice(&b[2..b.len() / 2]);
        assert!(check(&crafted).is_err());
        crafted.truncate(10);
        crafted.extend_from_slice(&b[2..]);
        assert_eq!(check(&crafted), Ok(()));
    }
}

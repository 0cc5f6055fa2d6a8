//! Whether a TIFF's tags fit in the file. The `tiff` decoder sizes its buffers from a tag's
//! declared count while it opens the file, before any limit applies: a 5 KB TIFF whose tag
//! declared 266 MB of values made it allocate that much (found by `tests/fuzz`). So every
//! directory entry's values are checked to lie inside the file first. Classic TIFF and
//! BigTIFF, both byte orders.

/// At most this many directories (pages) are walked; a loop of offsets stops here.
const MAX_DIRECTORIES: usize = 64;

fn type_size(t: u16) -> u64 {
    match t {
        1 | 2 | 6 | 7 => 1,
        3 | 8 => 2,
        4 | 9 | 11 | 13 => 4,
        5 | 10 | 12 | 16 | 17 | 18 => 8,
        _ => 1,
    }
}

/// Ok when every tag's values lie inside the file; Err names the first that does not.
pub fn check(bytes: &[u8]) -> Result<(), String> {
    let little = match bytes.get(..2) {
        Some(b"II") => true,
        Some(b"MM") => false,
        _ => return Err("no TIFF byte-order mark".into()),
    };
    let uint = |at: u64, width: usize| -> Result<u64, String> {
        let at = usize::try_from(at).map_err(|_| "offset out of range".to_string())?;
        let b = at
            .checked_add(width)
            .and_then(|end| bytes.get(at..end))
            .ok_or_else(|| format!("the file ends at byte {} inside a directory", bytes.len()))?;
        let mut v = 0u64;
        for k in 0..width {
            let byte = if little { b[width - 1 - k] } else { b[k] };
            v = (v << 8) | byte as u64;
        }
        Ok(v)
    };
    let big = match uint(2, 2)? {
        42 => false,
        43 => true,
        v => return Err(format!("TIFF version {v} is neither 42 nor 43 (BigTIFF)")),
    };
    let (word, entry, inline) = if big { (8, 20u64, 8u64) } else { (4, 12, 4) };
    let len = bytes.len() as u64;
    let mut ifd = uint(if big { 8 } else { 4 }, word)?;
    for _ in 0..MAX_DIRECTORIES {
        if ifd == 0 {
            return Ok(());
        }
        let count_width = if big { 8 } else { 2 };
        let entries = uint(ifd, count_width)?;
        let first = ifd + count_width as u64;
        if entries.saturating_mul(entry) > len {
            return Err(format!("a directory declares {entries} entries"));
        }
        for e in 0..entries {
            let at = first + e * entry;
            let tag = uint(at, 2)?;
            let size = uint(at + 4, word)?.saturating_mul(type_size(uint(at + 2, 2)? as u16));
            if size > inline {
                let offset = uint(at + 4 + word as u64, word)?;
                if offset.saturating_add(size) > len {
                    return Err(format!(
                        "tag {tag} declares {size} bytes at offset {offset}, past the end of the \
                         {len}-byte file"
                    ));
                }
            }
        }
        ifd = uint(first + entries * entry, word)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check;

    fn tiff() -> Vec<u8> {
        let img = image::RgbImage::from_pixel(5, 4, image::Rgb([9, 8, 7]));
        let mut buf = std::io::Cursor::new(Vec::new());
        image::DynamicImage::ImageRgb8(img)
            .write_to(&mut buf, image::ImageFormat::Tiff)
            .expect("encode");
        buf.into_inner()
    }

    #[test]
    fn a_written_tiff_passes_and_a_tag_past_the_end_does_not() {
        let mut b = tiff();
        assert_eq!(check(&b), Ok(()));
        // the first directory's first entry: make its count huge
        let ifd = u32::from_le_bytes([b[4], b[5], b[6], b[7]]) as usize;
        let count_at = ifd + 2 + 4;
        b[count_at..count_at + 4].copy_from_slice(&0x0fff_ffffu32.to_le_bytes());
        let e = check(&b).unwrap_err();
        assert!(e.contains("past the end of the"), "{e}");
        assert!(check(&b[..ifd + 3]).is_err());
        assert!(check(b"II\x2b\x00").is_err());
    }
}

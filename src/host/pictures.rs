//! Pictures people send, made fit for a model: a photo from a phone is usually larger than the
//! 5 MB (base64) a model accepts, or far more pixels than it looks at. Next to such a picture a
//! copy for the model is kept (`<stored>.model.jpg`): turned upright by its EXIF orientation,
//! scaled to [`LONG_EDGE_MAX`] on its long edge, JPEG. The router gives it to the agent with the
//! original; the runner shows the model the copy.
//!
//! Decoding is bounded (dimensions and memory), so a crafted file cannot exhaust the host.

use std::io::BufWriter;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageDecoder, ImageReader, Limits};

/// The long edge of the model's copy (the size both providers recommend looking at).
pub const LONG_EDGE_MAX: u32 = 1568;
/// A picture this large (bytes) always gets a copy; its base64 would exceed 5 MB.
pub const BYTES_MAX: u64 = 3_750_000;
/// Pictures with more pixels on a side than this are not decoded at all.
const DIMENSION_MAX: u32 = 20_000;
/// Memory one decode may take.
const DECODE_BYTES_MAX: u64 = 512 * 1024 * 1024;
const JPEG_QUALITY: u8 = 85;

/// Where the model's copy of a stored picture is.
pub fn model_copy(stored: &Path) -> PathBuf {
    let mut name = stored.file_name().unwrap_or_default().to_os_string();
    name.push(".model.jpg");
    stored.with_file_name(name)
}

fn is_picture(path: &Path) -> bool {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or_default().to_ascii_lowercase();
    matches!(ext.as_str(), "png" | "jpg" | "jpeg" | "webp")
}

/// Makes the model's copy of a stored picture when it needs one (too many bytes, too many
/// pixels, or not upright); returns whether there is one now. Not a picture, or one that does
/// not decode: no copy, and the reason.
pub fn prepare(stored: &Path) -> Result<bool, String> {
    if !is_picture(stored) {
        return Ok(false);
    }
    let size = std::fs::metadata(stored).map_err(|e| e.to_string())?.len();
    let mut reader = ImageReader::open(stored).map_err(|e| e.to_string())?;
    reader = reader.with_guessed_format().map_err(|e| e.to_string())?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(DIMENSION_MAX);
    limits.max_image_height = Some(DIMENSION_MAX);
    limits.max_alloc = Some(DECODE_BYTES_MAX);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(|e| format!("not a picture it can read: {e}"))?;
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let (w, h) = decoder.dimensions();
    let upright = orientation == image::metadata::Orientation::NoTransforms;
    if size <= BYTES_MAX && w.max(h) <= LONG_EDGE_MAX && upright {
        return Ok(false);
    }
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| format!("decoding: {e}"))?;
    img.apply_orientation(orientation);
    if img.width().max(img.height()) > LONG_EDGE_MAX {
        // `thumbnail` averages pixels: fast, and sharp enough at these ratios.
        img = img.thumbnail(LONG_EDGE_MAX, LONG_EDGE_MAX);
    }
    let rgb = DynamicImage::ImageRgb8(img.to_rgb8());
    let copy = model_copy(stored);
    let partial = copy.with_extension("jpg.partial");
    let out = std::fs::File::create(&partial).map_err(|e| e.to_string())?;
    let mut writer = BufWriter::new(out);
    let encoded = rgb
        .write_with_encoder(image::codecs::jpeg::JpegEncoder::new_with_quality(&mut writer, JPEG_QUALITY))
        .map_err(|e| format!("encoding: {e}"));
    let flushed = encoded.and_then(|()| {
        let f = writer.into_inner().map_err(|e| e.to_string())?;
        f.sync_all().map_err(|e| e.to_string())
    });
    if let Err(e) = flushed.and_then(|()| std::fs::rename(&partial, &copy).map_err(|e| e.to_string())) {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageBuffer, Rgb};

    fn noise(w: u32, h: u32) -> DynamicImage {
        let mut seed = 7u32;
        DynamicImage::ImageRgb8(ImageBuffer::from_fn(w, h, |_, _| {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let b = seed.to_le_bytes();
            Rgb([b[1], b[2], b[3]])
        }))
    }

    #[test]
    fn large_pictures_get_an_upright_scaled_copy() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("abc-photo.png");
        noise(3000, 2000).save(&big).unwrap();
        assert!(std::fs::metadata(&big).unwrap().len() > BYTES_MAX, "the test picture is over the limit");
        assert!(prepare(&big).unwrap());
        let copy = image::open(model_copy(&big)).unwrap();
        assert_eq!((copy.width(), copy.height()), (LONG_EDGE_MAX, 1045));
        assert!(std::fs::metadata(model_copy(&big)).unwrap().len() < BYTES_MAX);

        // Small enough and upright: no copy.
        let small = dir.path().join("abc-small.jpg");
        noise(400, 300).save(&small).unwrap();
        assert!(!prepare(&small).unwrap());
        assert!(!model_copy(&small).exists());

        // Not a picture, or not really one.
        let text = dir.path().join("abc-notes.txt");
        std::fs::write(&text, "hello").unwrap();
        assert!(!prepare(&text).unwrap());
        let fake = dir.path().join("abc-fake.png");
        std::fs::write(&fake, b"\x89PNG\r\n\x1a\nnot really").unwrap();
        assert!(prepare(&fake).is_err());
        assert!(!model_copy(&fake).exists());
        assert_eq!(model_copy(Path::new("/u/r/abc-x.png")), Path::new("/u/r/abc-x.png.model.jpg"));
    }
}

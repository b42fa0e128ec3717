//! From untrusted image bytes (or raw pixels) to the network's input.
//!
//! Decoding uses the `image` crate with only its PNG and JPEG decoders,
//! under [`ImageLimits`]: the header's dimensions are checked before any
//! pixel buffer is allocated, so a decompression bomb (a small PNG
//! claiming 100,000 × 100,000 pixels) fails fast with
//! [`ModelError::InvalidInput`] instead of exhausting memory. EXIF
//! orientation is applied, so phone photos are seen upright. Greyscale is
//! replicated to RGB and alpha dropped. Then [`crate::resample`] resizes
//! and centre-crops, and the mean/std of `config.json` normalise.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageError, ImageReader};
use mnemos_models_core::{ModelError, Result};

use crate::config::VisionConfig;
use crate::resample::{resize_crop, Source};

/// An image to encode.
#[derive(Debug, Clone, Copy)]
pub enum ImageInput<'a> {
    /// A PNG or JPEG file's bytes.
    Encoded(&'a [u8]),
    /// Decoded 8-bit pixels, e.g. an MNIST digit.
    Pixels(Pixels<'a>),
}

/// Raw 8-bit pixels, rows top to bottom, samples interleaved.
#[derive(Debug, Clone, Copy)]
pub struct Pixels<'a> {
    pub width: u32,
    pub height: u32,
    pub format: PixelFormat,
    /// Exactly `width · height · format.channels()` bytes.
    pub data: &'a [u8],
}

/// Sample layout of [`Pixels`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    Gray8,
    GrayAlpha8,
    Rgb8,
    Rgba8,
}

impl PixelFormat {
    /// Bytes per pixel.
    pub fn channels(self) -> usize {
        match self {
            Self::Gray8 => 1,
            Self::GrayAlpha8 => 2,
            Self::Rgb8 => 3,
            Self::Rgba8 => 4,
        }
    }
}

/// Bounds on what a single input may cost to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLimits {
    /// Largest width or height accepted, in pixels.
    pub max_side: u32,
    /// Largest decoded pixel buffer accepted, in bytes.
    pub max_decoded_bytes: u64,
}

impl Default for ImageLimits {
    /// 8192 pixels a side and 256 MiB decoded: a 48-megapixel RGB photo
    /// (8000×6000, 144 MB) passes; a bomb does not.
    fn default() -> Self {
        Self {
            max_side: 8192,
            max_decoded_bytes: 256 << 20,
        }
    }
}

/// One image ready for the network: `size × size × 3` normalised floats,
/// row-major HWC.
#[derive(Debug, Clone, PartialEq)]
pub struct Preprocessed {
    pub(crate) size: usize,
    pub(crate) data: Vec<f32>,
}

impl Preprocessed {
    /// Side of the square image.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The normalised samples, HWC.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }
}

/// Decodes, resizes, crops and normalises as the model was trained.
#[derive(Debug, Clone)]
pub(crate) struct Preprocessor {
    pub size: usize,
    pub shorter: usize,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub limits: ImageLimits,
}

impl Preprocessor {
    pub fn new(config: &VisionConfig, limits: ImageLimits) -> Self {
        Self {
            size: config.image_size,
            shorter: config.resize_shorter,
            mean: config.mean,
            std: config.std,
            limits,
        }
    }

    pub fn run(&self, input: &ImageInput<'_>) -> Result<Preprocessed> {
        let rgb = match input {
            ImageInput::Encoded(bytes) => {
                let image = self.decode(bytes)?;
                let source = as_source(&image);
                self.finish(source_of(&source))
            }
            ImageInput::Pixels(pixels) => {
                self.check_dimensions(pixels.width, pixels.height)?;
                let channels = pixels.format.channels();
                let expected = pixels.width as usize * pixels.height as usize * channels;
                if pixels.data.len() != expected {
                    return Err(ModelError::InvalidInput(format!(
                        "{}×{} {:?} pixels need {expected} bytes, got {}",
                        pixels.width,
                        pixels.height,
                        pixels.format,
                        pixels.data.len()
                    )));
                }
                self.finish(Source {
                    width: pixels.width as usize,
                    height: pixels.height as usize,
                    channels,
                    data: pixels.data,
                })
            }
        };
        Ok(rgb)
    }

    fn check_dimensions(&self, width: u32, height: u32) -> Result<()> {
        if width == 0 || height == 0 {
            return Err(ModelError::InvalidInput(format!(
                "image is empty ({width}×{height} pixels)"
            )));
        }
        let max = self.limits.max_side;
        if width > max || height > max {
            return Err(ModelError::InvalidInput(format!(
                "image is {width}×{height} pixels; at most {max} a side is accepted"
            )));
        }
        Ok(())
    }

    fn decode(&self, bytes: &[u8]) -> Result<DynamicImage> {
        let mut reader = ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| ModelError::InvalidInput(format!("cannot read image: {e}")))?;
        if reader.format().is_none() {
            return Err(ModelError::InvalidInput(
                "not an image in a supported format (PNG or JPEG)".into(),
            ));
        }
        let mut limits = image::Limits::default();
        limits.max_image_width = Some(self.limits.max_side);
        limits.max_image_height = Some(self.limits.max_side);
        limits.max_alloc = Some(self.limits.max_decoded_bytes);
        reader.limits(limits);

        let mut decoder = reader.into_decoder().map_err(image_error)?;
        let (width, height) = decoder.dimensions();
        self.check_dimensions(width, height)?;
        if decoder.total_bytes() > self.limits.max_decoded_bytes {
            return Err(ModelError::InvalidInput(format!(
                "image is {width}×{height} pixels, {} bytes decoded; at most {} are accepted",
                decoder.total_bytes(),
                self.limits.max_decoded_bytes
            )));
        }
        let orientation = decoder.orientation().map_err(image_error)?;
        let mut image = DynamicImage::from_decoder(decoder).map_err(image_error)?;
        image.apply_orientation(orientation);
        Ok(image)
    }

    /// Resize, crop and normalise.
    fn finish(&self, source: Source<'_>) -> Preprocessed {
        let mut data = resize_crop(source, self.shorter, self.size);
        let scale: [f32; 3] = std::array::from_fn(|c| 1.0 / (255.0 * self.std[c]));
        let shift: [f32; 3] = std::array::from_fn(|c| self.mean[c] / self.std[c]);
        for px in data.chunks_exact_mut(3) {
            for c in 0..3 {
                px[c] = px[c] * scale[c] - shift[c];
            }
        }
        Preprocessed {
            size: self.size,
            data,
        }
    }
}

/// Pixels of a decoded image in one of the 8-bit layouts the resampler
/// reads directly; other layouts (16-bit, float) are converted to RGB8.
enum Decoded<'a> {
    Borrowed(&'a DynamicImage),
    Converted(image::RgbImage),
}

fn as_source(image: &DynamicImage) -> Decoded<'_> {
    match image {
        DynamicImage::ImageLuma8(_)
        | DynamicImage::ImageLumaA8(_)
        | DynamicImage::ImageRgb8(_)
        | DynamicImage::ImageRgba8(_) => Decoded::Borrowed(image),
        other => Decoded::Converted(other.to_rgb8()),
    }
}

fn source_of<'a>(decoded: &'a Decoded<'a>) -> Source<'a> {
    match decoded {
        Decoded::Borrowed(image) => Source {
            width: image.width() as usize,
            height: image.height() as usize,
            channels: usize::from(image.color().channel_count()),
            data: image.as_bytes(),
        },
        Decoded::Converted(rgb) => Source {
            width: rgb.width() as usize,
            height: rgb.height() as usize,
            channels: 3,
            data: rgb.as_raw(),
        },
    }
}

fn image_error(err: ImageError) -> ModelError {
    match err {
        ImageError::Limits(e) => ModelError::InvalidInput(format!("image too large: {e}")),
        ImageError::Unsupported(e) => ModelError::InvalidInput(format!("unsupported image: {e}")),
        other => ModelError::InvalidInput(format!("cannot decode image: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::ImageEncoder;

    fn preprocessor() -> Preprocessor {
        Preprocessor::new(&VisionConfig::default(), ImageLimits::default())
    }

    fn png(width: u32, height: u32, color: image::ExtendedColorType, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        image::codecs::png::PngEncoder::new(&mut out)
            .write_image(data, width, height, color)
            .expect("encode png");
        out
    }

    #[test]
    fn grey_png_and_raw_pixels_agree() {
        let data: Vec<u8> = (0..28 * 28).map(|i| (i % 256) as u8).collect();
        let p = preprocessor();
        let from_png = p
            .run(&ImageInput::Encoded(&png(
                28,
                28,
                image::ExtendedColorType::L8,
                &data,
            )))
            .expect("png");
        let from_raw = p
            .run(&ImageInput::Pixels(Pixels {
                width: 28,
                height: 28,
                format: PixelFormat::Gray8,
                data: &data,
            }))
            .expect("raw");
        assert_eq!(from_png, from_raw);
        assert_eq!(from_png.as_slice().len(), 224 * 224 * 3);
        // Grey: R = G = B; scaled to [-1, 1].
        for px in from_png.as_slice().chunks_exact(3) {
            assert_eq!(px[0], px[1]);
            assert_eq!(px[1], px[2]);
            assert!((-1.0..=1.0).contains(&px[0]));
        }
    }

    #[test]
    fn rgba_drops_alpha_and_jpeg_decodes() {
        let rgba: Vec<u8> = (0..40 * 30)
            .flat_map(|i| [200, 100, (i % 256) as u8, (i % 3) as u8 * 100])
            .collect();
        let rgb: Vec<u8> = rgba.chunks(4).flat_map(|p| [p[0], p[1], p[2]]).collect();
        let p = preprocessor();
        let a = p
            .run(&ImageInput::Encoded(&png(
                40,
                30,
                image::ExtendedColorType::Rgba8,
                &rgba,
            )))
            .expect("rgba");
        let b = p
            .run(&ImageInput::Encoded(&png(
                40,
                30,
                image::ExtendedColorType::Rgb8,
                &rgb,
            )))
            .expect("rgb");
        assert_eq!(a, b);

        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95)
            .write_image(&rgb, 40, 30, image::ExtendedColorType::Rgb8)
            .expect("encode jpeg");
        let c = p.run(&ImageInput::Encoded(&jpeg)).expect("jpeg");
        let worst = b
            .as_slice()
            .iter()
            .zip(c.as_slice())
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        // Lossy, but close: 0.1 is ~13 grey levels.
        assert!(worst < 0.1, "jpeg differs by {worst}");
    }

    #[test]
    fn bad_inputs_are_invalid_input_errors() {
        let p = preprocessor();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", vec![]),
            ("text", b"hello, not an image".to_vec()),
            (
                "truncated png",
                png(8, 8, image::ExtendedColorType::L8, &[7; 64])[..40].to_vec(),
            ),
            ("gif", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec()),
        ];
        for (what, bytes) in cases {
            let err = p.run(&ImageInput::Encoded(&bytes)).expect_err(what);
            assert!(matches!(err, ModelError::InvalidInput(_)), "{what}: {err}");
        }
        let raw = |width, height, data: &'static [u8]| {
            p.run(&ImageInput::Pixels(Pixels {
                width,
                height,
                format: PixelFormat::Rgb8,
                data,
            }))
        };
        assert!(matches!(raw(0, 0, &[]), Err(ModelError::InvalidInput(_))));
        assert!(matches!(
            raw(2, 2, &[0; 5]),
            Err(ModelError::InvalidInput(_))
        ));
        assert!(matches!(
            raw(100_000, 1, &[]),
            Err(ModelError::InvalidInput(_))
        ));
    }

    /// A valid PNG header claiming 50,000 × 50,000 pixels (7.5 GB of RGB)
    /// is refused from its header, before any allocation.
    #[test]
    fn decompression_bombs_are_refused() {
        let mut bomb = png(1, 1, image::ExtendedColorType::Rgb8, &[0, 0, 0]);
        // IHDR width and height live at bytes 16..24; fix the CRC after.
        bomb[16..20].copy_from_slice(&50_000u32.to_be_bytes());
        bomb[20..24].copy_from_slice(&50_000u32.to_be_bytes());
        let crc = crc32(&bomb[12..29]);
        bomb[29..33].copy_from_slice(&crc.to_be_bytes());
        let err = preprocessor()
            .run(&ImageInput::Encoded(&bomb))
            .expect_err("bomb");
        assert!(matches!(err, ModelError::InvalidInput(_)), "{err}");

        // Within the side limit but over the byte limit.
        let small = Preprocessor::new(
            &VisionConfig::default(),
            ImageLimits {
                max_side: 8192,
                max_decoded_bytes: 1000,
            },
        );
        let ok = png(32, 32, image::ExtendedColorType::Rgb8, &[9; 32 * 32 * 3]);
        let err = small
            .run(&ImageInput::Encoded(&ok))
            .expect_err("over byte limit");
        assert!(err.to_string().contains("bytes"), "{err}");
    }

    /// CRC-32 (ISO-HDLC), as PNG chunks use.
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
}

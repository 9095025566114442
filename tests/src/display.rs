//! A real X server for the lock screen's tests: Xvfb on a display of its
//! own, driven with xdotool, read back with xwd.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// An Xvfb server, stopped when dropped (its clients lose their display).
#[derive(Debug)]
pub struct Display {
    server: Child,
    name: String,
}

impl Display {
    /// Starts Xvfb with one screen of `width` × `height` on a free display.
    pub fn start(width: u32, height: u32) -> Display {
        let xvfb = crate::installed(&["/usr/bin/Xvfb"], "xvfb");
        let mut server = Command::new(xvfb)
            .args(["-displayfd", "1", "-nolisten", "tcp", "-screen", "0", &format!("{width}x{height}x24")])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb starts");
        // Xvfb writes the display number it took once it accepts clients.
        let mut number = String::new();
        BufReader::new(server.stdout.take().expect("Xvfb's output")).read_line(&mut number).expect("Xvfb's display number");
        assert!(!number.trim().is_empty(), "Xvfb did not start");
        Display { server, name: format!(":{}", number.trim()) }
    }

    /// `:N`, for `DISPLAY`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs an X client program on this display; its standard output.
    pub fn run(&self, program: &str, args: &[&str]) -> String {
        let output = Command::new(program).args(args).env("DISPLAY", &self.name).output().unwrap_or_else(|e| panic!("{program}: {e}"));
        assert!(output.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Types `text` and presses Return, to whichever window has the keyboard.
    pub fn type_line(&self, text: &str) {
        self.run("xdotool", &["type", "--delay", "30", text]);
        self.run("xdotool", &["key", "Return"]);
    }

    /// Clicks at (`x`, `y`).
    pub fn click(&self, x: u32, y: u32) {
        self.run("xdotool", &["mousemove", &x.to_string(), &y.to_string(), "click", "1"]);
    }

    /// The whole screen as it is now.
    pub fn capture(&self) -> Image {
        let output = Command::new("xwd").args(["-root", "-silent", "-display", &self.name]).output().expect("xwd runs (package x11-apps)");
        assert!(output.status.success(), "xwd: {}", String::from_utf8_lossy(&output.stderr));
        Image::from_xwd(&output.stdout).expect("xwd writes a 24-bit image")
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// A screenshot: RGB pixels, row after row.
#[derive(Debug, Clone)]
pub struct Image {
    pub width: u32,
    pub height: u32,
    rgb: Vec<u8>,
}

impl Image {
    /// Reads an XWD image of 32 bits a pixel (what xwd writes of a 24-bit screen).
    pub fn from_xwd(data: &[u8]) -> Result<Image, String> {
        let field = |index: usize| -> Result<u32, String> {
            let bytes = data.get(index * 4..index * 4 + 4).ok_or("the XWD header is cut short")?;
            Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
        };
        let (header, width, height, byte_order, bits_per_pixel, bytes_per_line, colors) =
            (field(0)?, field(4)?, field(5)?, field(7)?, field(11)?, field(12)?, field(19)?);
        if bits_per_pixel != 32 {
            return Err(format!("{bits_per_pixel} bits a pixel; only 32 are read"));
        }
        let start = header as usize + colors as usize * 12;
        let mut rgb = Vec::with_capacity(width as usize * height as usize * 3);
        for y in 0..height as usize {
            let row = data.get(start + y * bytes_per_line as usize..).ok_or("the XWD pixels are cut short")?;
            for x in 0..width as usize {
                let pixel = row.get(x * 4..x * 4 + 4).ok_or("the XWD pixels are cut short")?;
                let value = if byte_order == 0 {
                    u32::from_le_bytes([pixel[0], pixel[1], pixel[2], pixel[3]])
                } else {
                    u32::from_be_bytes([pixel[0], pixel[1], pixel[2], pixel[3]])
                };
                rgb.extend([(value >> 16) as u8, (value >> 8) as u8, value as u8]);
            }
        }
        Ok(Image { width, height, rgb })
    }

    /// The colour at (`x`, `y`).
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let at = (y as usize * self.width as usize + x as usize) * 3;
        [self.rgb[at], self.rgb[at + 1], self.rgb[at + 2]]
    }

    /// The share of pixels within `tolerance` of `color`, in the rectangle
    /// from (`x`, `y`) of `width` × `height`.
    pub fn share(&self, color: [u8; 3], tolerance: u8, (x, y, width, height): (u32, u32, u32, u32)) -> f64 {
        let mut matching = 0u64;
        for row in y..(y + height).min(self.height) {
            for column in x..(x + width).min(self.width) {
                let pixel = self.pixel(column, row);
                if pixel.iter().zip(color).all(|(a, b)| a.abs_diff(b) <= tolerance) {
                    matching += 1;
                }
            }
        }
        matching as f64 / (u64::from(width) * u64::from(height)).max(1) as f64
    }

    /// The share of pixels within `tolerance` of `color` on the whole screen.
    pub fn share_all(&self, color: [u8; 3], tolerance: u8) -> f64 {
        self.share(color, tolerance, (0, 0, self.width, self.height))
    }

    /// Writes the image as a PNG file.
    pub fn save_png(&self, path: &Path) {
        let file = std::io::BufWriter::new(std::fs::File::create(path).expect("screenshot file"));
        let mut encoder = png::Encoder::new(file, self.width, self.height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_compression(png::Compression::Best);
        let mut writer = encoder.write_header().expect("PNG header");
        writer.write_image_data(&self.rgb).expect("PNG data");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_xwd_image_reads_back() {
        // A 2 × 1 image: header of 100 bytes, no colour map, little-endian pixels.
        let mut data = Vec::new();
        let fields: [u32; 25] = [100, 7, 2, 24, 2, 1, 0, 0, 32, 0, 32, 32, 8, 4, 0xff0000, 0xff00, 0xff, 8, 0, 0, 2, 1, 0, 0, 0];
        for field in fields {
            data.extend(field.to_be_bytes());
        }
        data.extend([0x30, 0x20, 0x10, 0, 0xff, 0, 0xc7, 0]);
        let image = Image::from_xwd(&data).unwrap();
        assert_eq!((image.width, image.height), (2, 1));
        assert_eq!(image.pixel(0, 0), [0x10, 0x20, 0x30]);
        assert_eq!(image.pixel(1, 0), [0xc7, 0, 0xff]);
        assert_eq!(image.share_all([0xc7, 0, 0xff], 0), 0.5);
        assert!(Image::from_xwd(&data[..50]).is_err());
    }
}

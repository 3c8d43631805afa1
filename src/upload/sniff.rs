//! Recognises video containers from their first bytes, before anything is decoded.

/// How many leading bytes [`sniff`] wants to see (fewer is fine at the end of a short file).
pub const SNIFF_LEN: usize = 512;

/// A container family recognised by its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// ISO base media: MP4, MOV, M4V, 3GP (an `ftyp`, `moov`, `mdat`, `free`, `wide` or `skip` box).
    IsoBmff,
    /// Matroska and WebM (EBML header).
    Matroska,
    /// RIFF AVI.
    Avi,
    /// MPEG transport stream (sync byte every 188 bytes).
    MpegTs,
    /// MPEG program stream (pack header).
    MpegPs,
    Flv,
    Ogg,
    /// Windows Media / ASF.
    Asf,
    Mxf,
}

impl Container {
    /// The container family's canonical media type (`video/mp4`, `video/x-matroska`, …), the
    /// same for every file of the family: what is stored about an upload.
    pub fn mime(self) -> &'static str {
        self.media_type(&[])
    }

    /// The media type a download of this container is sent as. `head` (the file's first
    /// bytes) tells QuickTime from MP4 (`ftyp` brand `qt  `) and WebM from Matroska (EBML
    /// DocType `webm`).
    pub fn media_type(self, head: &[u8]) -> &'static str {
        match self {
            Self::IsoBmff if head.get(8..12) == Some(b"qt  ") => "video/quicktime",
            Self::IsoBmff => "video/mp4",
            Self::Matroska if is_webm(head) => "video/webm",
            Self::Matroska => "video/x-matroska",
            Self::Avi => "video/x-msvideo",
            Self::MpegTs => "video/mp2t",
            Self::MpegPs => "video/mpeg",
            Self::Flv => "video/x-flv",
            Self::Ogg => "video/ogg",
            Self::Asf => "video/x-ms-asf",
            Self::Mxf => "application/mxf",
        }
    }
}

/// The media type of a file whose first bytes are `head`; `application/octet-stream` when it
/// is no container reel knows.
pub fn media_type(head: &[u8]) -> &'static str {
    sniff(head).map_or("application/octet-stream", |container| {
        container.media_type(head)
    })
}

/// An EBML header whose DocType element (id `0x4282`, size `0x84`) says `webm`.
fn is_webm(head: &[u8]) -> bool {
    head.windows(7).any(|w| w == b"\x42\x82\x84webm")
}

/// Names the container of `head`, the first bytes of a file, or `None` when it is not a video container.
pub fn sniff(head: &[u8]) -> Option<Container> {
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
    const BOXES: [&[u8]; 6] = [b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"];
    if BOXES.iter().any(|name| at(4, name)) {
        return Some(Container::IsoBmff);
    }
    if at(0, &[0x1A, 0x45, 0xDF, 0xA3]) {
        return Some(Container::Matroska);
    }
    if at(0, b"RIFF") && at(8, b"AVI ") {
        return Some(Container::Avi);
    }
    if at(0, &[0x00, 0x00, 0x01, 0xBA]) {
        return Some(Container::MpegPs);
    }
    if at(0, b"FLV\x01") {
        return Some(Container::Flv);
    }
    if at(0, b"OggS") {
        return Some(Container::Ogg);
    }
    if at(0, &[0x30, 0x26, 0xB2, 0x75, 0x8E, 0x66, 0xCF, 0x11]) {
        return Some(Container::Asf);
    }
    if at(0, &[0x06, 0x0E, 0x2B, 0x34]) {
        return Some(Container::Mxf);
    }
    if is_transport_stream(head) {
        return Some(Container::MpegTs);
    }
    None
}

/// Two or more sync bytes 188 apart (plain TS) or 192 apart (M2TS with timecodes).
fn is_transport_stream(head: &[u8]) -> bool {
    [(188, 0), (192, 4)].iter().any(|&(stride, offset)| {
        let syncs: Vec<u8> = head
            .iter()
            .skip(offset)
            .step_by(stride)
            .take(3)
            .copied()
            .collect();
        syncs.len() >= 2 && syncs.iter().all(|&b| b == 0x47)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_box(name: &[u8]) -> Vec<u8> {
        let mut head = vec![0, 0, 0, 0x20];
        head.extend_from_slice(name);
        head.extend_from_slice(b"isom\0\0\x02\0");
        head
    }

    #[test]
    fn recognises_common_containers() {
        assert_eq!(sniff(&with_box(b"ftyp")), Some(Container::IsoBmff));
        assert_eq!(sniff(&with_box(b"moov")), Some(Container::IsoBmff));
        assert_eq!(
            sniff(&[0x1A, 0x45, 0xDF, 0xA3, 0x9F]),
            Some(Container::Matroska)
        );
        assert_eq!(sniff(b"RIFF\x10\0\0\0AVI LIST"), Some(Container::Avi));
        assert_eq!(sniff(b"FLV\x01\x05"), Some(Container::Flv));
        assert_eq!(sniff(b"OggS\0\x02"), Some(Container::Ogg));
        let mut ts = vec![0u8; 400];
        ts[0] = 0x47;
        ts[188] = 0x47;
        ts[376] = 0x47;
        assert_eq!(sniff(&ts), Some(Container::MpegTs));
    }

    #[test]
    fn media_types_follow_the_container_and_its_brand() {
        assert_eq!(media_type(&with_box(b"ftyp")), "video/mp4");
        let mut mov = vec![0, 0, 0, 0x14];
        mov.extend_from_slice(b"ftypqt  \0\0\x02\0");
        assert_eq!(media_type(&mov), "video/quicktime");
        let webm = [
            0x1A, 0x45, 0xDF, 0xA3, 0x9F, 0x42, 0x82, 0x84, b'w', b'e', b'b', b'm',
        ];
        assert_eq!(media_type(&webm), "video/webm");
        assert_eq!(media_type(&webm[..5]), "video/x-matroska");
        assert_eq!(media_type(b"not a video"), "application/octet-stream");
    }

    #[test]
    fn rejects_text_images_and_short_junk() {
        assert_eq!(sniff(b"hello, this is not a video at all"), None);
        assert_eq!(
            sniff(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]),
            None
        );
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), None);
        assert_eq!(sniff(b""), None);
        assert_eq!(
            sniff(&[0x47]),
            None,
            "one sync byte is not a transport stream"
        );
        assert_eq!(
            sniff(b"RIFF\x10\0\0\0WAVEfmt "),
            None,
            "WAV is RIFF but not AVI"
        );
    }
}

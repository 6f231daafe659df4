//! Attachments the rules care about: executables (by name, by type, by the
//! `MZ` header) and Office documents with macros. The macro check is a
//! minimal bounded byte scan, no archive or compound-file reader: an OOXML
//! document is a zip whose member names are stored uncompressed, so a
//! `vbaProject.bin` member shows as those bytes; an OLE compound file
//! (`D0 CF 11 E0`) names its streams in UTF-16LE directory entries, so a
//! VBA project shows as `_VBA_PROJECT` in UTF-16LE. Only the scanned
//! prefix of the message is seen.

use memchr::memmem;

/// File name endings that run code when opened on Windows.
const EXECUTABLE: &[&str] = &[
    "exe", "scr", "com", "bat", "cmd", "pif", "vbs", "vbe", "js", "jse", "jar", "msi", "lnk",
    "hta", "ps1", "wsf", "cpl", "reg", "dll", "iso", "img",
];
/// Macro-enabled Office name endings.
const MACRO_NAMES: &[&str] = &[
    "docm", "dotm", "xlsm", "xltm", "xlam", "pptm", "potm", "ppam",
];

/// Whether a part with this name, content type and bytes is an executable.
pub fn is_executable(name: Option<&str>, content_type: &str, bytes: &[u8]) -> bool {
    let by_name = name.is_some_and(|n| {
        let n = n.trim().trim_end_matches(['.', ' ']).to_ascii_lowercase();
        n.rsplit_once('.')
            .is_some_and(|(_, ext)| EXECUTABLE.contains(&ext))
    });
    let ct = content_type.to_ascii_lowercase();
    let by_type = [
        "x-msdownload",
        "x-msdos-program",
        "x-dosexec",
        "x-executable",
    ]
    .iter()
    .any(|t| ct.ends_with(t));
    by_name || by_type || bytes.starts_with(b"MZ") && bytes.len() > 64
}

/// Whether a part is an Office document carrying macros.
pub fn has_macros(name: Option<&str>, bytes: &[u8]) -> bool {
    if bytes.starts_with(b"PK\x03\x04") {
        return memmem::find(bytes, b"vbaProject.bin").is_some()
            || name.is_some_and(|n| {
                let n = n.trim().to_ascii_lowercase();
                n.rsplit_once('.')
                    .is_some_and(|(_, ext)| MACRO_NAMES.contains(&ext))
            });
    }
    if bytes.starts_with(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]) {
        const VBA: &[u8] = b"_\0V\0B\0A\0_\0P\0R\0O\0J\0E\0C\0T\0";
        return memmem::find(bytes, VBA).is_some();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executables() {
        assert!(is_executable(
            Some("invoice.pdf.exe"),
            "application/pdf",
            b""
        ));
        assert!(is_executable(Some("x.JS"), "text/plain", b""));
        assert!(is_executable(None, "application/x-msdownload", b""));
        assert!(is_executable(
            None,
            "application/octet-stream",
            &[b'M', b'Z', 0, 0].repeat(40)
        ));
        assert!(!is_executable(
            Some("report.pdf"),
            "application/pdf",
            b"%PDF"
        ));
    }

    #[test]
    fn macros() {
        let mut zip = b"PK\x03\x04".to_vec();
        zip.extend_from_slice(&[0; 26]);
        zip.extend_from_slice(b"word/vbaProject.bin");
        assert!(has_macros(Some("a.docx"), &zip));
        assert!(has_macros(Some("a.xlsm"), b"PK\x03\x04rest"));
        assert!(!has_macros(Some("a.docx"), b"PK\x03\x04word/document.xml"));
        let mut ole = vec![0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];
        ole.extend_from_slice(&[0; 500]);
        assert!(!has_macros(Some("a.doc"), &ole));
        ole.extend_from_slice(b"_\0V\0B\0A\0_\0P\0R\0O\0J\0E\0C\0T\0");
        assert!(has_macros(Some("a.doc"), &ole));
        assert!(!has_macros(None, b""));
    }
}

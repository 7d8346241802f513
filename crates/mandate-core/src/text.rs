//! Text that people read: names chosen by whoever registered a client are shown on the consent,
//! connected-apps and activity pages, so they must not be able to reorder or hide what is around
//! them (Trojan Source, CVE-2021-42574) or pass for something else.

/// Why a display name is refused, or `None` when it may be shown.
pub fn display_name_problem(name: &str) -> Option<&'static str> {
    if name.chars().any(char::is_control) {
        return Some("contains control characters");
    }
    if name.chars().any(is_bidi_control) {
        return Some("contains bidirectional formatting characters");
    }
    if name.chars().any(is_invisible) {
        return Some("contains invisible characters");
    }
    None
}

/// Characters that change the direction of the text around them (Unicode bidi controls).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Characters that render as nothing: zero-width spaces and joiners, invisible operators, the
/// byte-order mark, soft hyphen, fillers.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200D}'
            | '\u{2060}'..='\u{2064}'
            | '\u{3164}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{E0000}'..='\u{E007F}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_hide_or_reorder_text_are_refused_dc_12() {
        for bad in [
            "Claude\u{202E}ecnarusni",
            "Claude\u{2066}x\u{2069}",
            "Cla\u{200B}ude",
            "Claude\u{200D}",
            "\u{FEFF}Claude",
            "Claude\u{061C}",
            "Cl\u{00AD}aude",
            "Claude\u{E0041}",
            "Claude\n",
        ] {
            assert!(display_name_problem(bad).is_some(), "{bad:?}");
        }
        for good in ["Claude", "Cursor — work", "東京アプリ", "עברית app", "Zoë's agent"] {
            assert_eq!(display_name_problem(good), None, "{good:?}");
        }
    }
}

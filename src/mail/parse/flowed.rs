//! `text/plain; format=flowed` (RFC 3676) → plain paragraphs.
//!
//! A line that ends in a space continues on the next line of the same quote
//! depth (a soft break); any other line ends its paragraph. One leading space
//! is space-stuffing and is removed; `-- ` (the signature separator) is never
//! flowed. With `delsp=yes` the trailing space of a soft break is deleted
//! (used for languages written without spaces). Quote depth is kept as `> `
//! prefixes on each output line.

pub(super) fn unflow(text: &str, delsp: bool) -> String {
    let mut out = String::with_capacity(text.len());
    // The paragraph being joined: its quote depth and its text so far.
    let mut open: Option<(usize, String)> = None;

    let flush = |out: &mut String, depth: usize, body: &str| {
        for _ in 0..depth {
            out.push('>');
        }
        if depth > 0 && !body.is_empty() {
            out.push(' ');
        }
        out.push_str(body);
        out.push('\n');
    };

    let (body, ends_with_newline) = match text.strip_suffix('\n') {
        Some(body) => (body, true),
        None => (text, false),
    };
    for line in body.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let depth = line.chars().take_while(|&c| c == '>').count();
        let content = &line[depth..];
        let content = content.strip_prefix(' ').unwrap_or(content);
        let is_signature = content == "-- ";
        let soft = content.ends_with(' ') && !is_signature;

        if let Some((d, body)) = &open
            && *d != depth
        {
            // A change of quote depth ends the paragraph (RFC 3676 §4.5).
            flush(&mut out, *d, body);
            open = None;
        }
        let piece = if soft && delsp {
            &content[..content.len() - 1]
        } else {
            content
        };
        let body = match &mut open {
            Some((_, body)) => {
                body.push_str(piece);
                std::mem::take(body)
            }
            None => piece.to_string(),
        };
        if soft {
            open = Some((depth, body));
        } else {
            open = None;
            flush(&mut out, depth, &body);
        }
    }
    if let Some((d, body)) = open {
        flush(&mut out, d, &body);
    }
    // Every flushed line ends in '\n'; the input's last line may not have.
    if !ends_with_newline {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::unflow;

    #[test]
    fn soft_breaks_join_and_hard_breaks_stay() {
        let text = "This is a long \r\nparagraph that \r\nflows.\r\nNew line.\r\n";
        assert_eq!(
            unflow(&text.replace("\r\n", "\n"), false),
            "This is a long paragraph that flows.\nNew line.\n"
        );
    }

    #[test]
    fn quotes_are_joined_per_depth_and_stuffing_removed() {
        let text = "> quoted \n> text\n>> deeper \n>> still\n  stuffed\nplain";
        assert_eq!(
            unflow(text, false),
            "> quoted text\n>> deeper still\n stuffed\nplain"
        );
    }

    #[test]
    fn delsp_deletes_the_soft_space_and_signature_is_not_flowed() {
        assert_eq!(unflow("日本 \n語\n-- \nJane", true), "日本語\n-- \nJane");
    }

    #[test]
    fn never_panics_on_odd_input() {
        for s in [
            "",
            " ",
            ">",
            "> ",
            "\n\n",
            "a \n",
            "> a \n>> b \nc",
            "é \n\u{0}",
        ] {
            let _ = unflow(s, true);
            let _ = unflow(s, false);
        }
    }
}

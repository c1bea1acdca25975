//! The PDF transcript of an interaction, drawn with krilla and the bundled
//! DejaVu Sans (`assets/fonts`, embedded in the binary and subset into each
//! PDF). Pure: a [`Transcript`] in, PDF bytes out; `downloads.rs` gathers
//! the interaction's data and runs this on the blocking pool.
//!
//! # Decisions
//!
//! - **Line wrapping by measured widths.** krilla 0.8 does not expose glyph
//!   advances, so [`Metrics`] reads them from the font itself (its `cmap`
//!   and `hmtx` tables, once per process). Lines break at spaces; a word
//!   wider than a line breaks between characters. Kerning and ligatures only
//!   make shaped text narrower than measured, so lines never overflow.
//! - **Scripts.** DejaVu Sans covers Latin, Greek, Cyrillic, Hebrew, Arabic,
//!   Armenian, Georgian and many symbols; not CJK and not colour emoji. A
//!   character the font lacks is drawn as the font's empty box (`.notdef`);
//!   the text is still in the PDF's structure, never dropped. Each line is
//!   shaped in one direction, guessed from its first strong character; a
//!   line that starts right-to-left (Hebrew, Arabic) is right-aligned.
//! - **Total on any text.** Control characters are removed (tabs become
//!   spaces), empty text draws nothing, and a body longer than
//!   [`MAX_BODY_CHARS`] is cut with a note saying how much was left out (the
//!   `.eml` has it all).
//! - **Images** (`attachments=true`): PNG and JPEG attachments are appended,
//!   one per page, scaled to fit. Other types, images over
//!   [`MAX_IMAGE_PIXELS`], and images krilla cannot decode are listed only
//!   (with the reason on the listing page).

use std::collections::HashMap;
use std::sync::LazyLock;

use krilla::Document;
use krilla::color::rgb;
use krilla::error::KrillaError;
use krilla::geom::{PathBuilder, Point, Size, Transform};
use krilla::image::Image;
use krilla::metadata::Metadata;
use krilla::num::NormalizedF32;
use krilla::page::PageSettings;
use krilla::paint::{Fill, Stroke};
use krilla::surface::Surface;
use krilla::text::{Font, TextDirection};

static REGULAR: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
static BOLD: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-Bold.ttf");

static REGULAR_METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics::parse(REGULAR));
static BOLD_METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics::parse(BOLD));

/// A body longer than this (in characters) is cut: 200,000 characters are
/// about 60 pages, and the whole text is in the `.eml`.
pub const MAX_BODY_CHARS: usize = 200_000;
/// Images larger than this many pixels are listed, not drawn: krilla decodes
/// them whole into memory (40 Mpx ≈ 160 MB of RGBA).
pub const MAX_IMAGE_PIXELS: u64 = 40_000_000;

// A4 in points, with 50 pt margins.
const PAGE_W: f32 = 595.0;
const PAGE_H: f32 = 842.0;
const MARGIN: f32 = 50.0;
const TEXT_W: f32 = PAGE_W - 2.0 * MARGIN;

/// What a transcript shows, already in words (the HTTP layer resolves ids
/// to names and formats dates).
#[derive(Debug, Clone, Default)]
pub struct Transcript {
    pub title: String,
    /// The interaction's header: (label, value) pairs.
    pub header: Vec<(String, String)>,
    pub entries: Vec<Entry>,
}

/// One message or note.
#[derive(Debug, Clone, Default)]
pub struct Entry {
    /// E.g. "Incoming mail", "INTERNAL NOTE".
    pub heading: String,
    /// Drawn in the internal colour (notes).
    pub internal: bool,
    pub fields: Vec<(String, String)>,
    pub body: String,
    /// One line per attachment ("name — type, size").
    pub attachments: Vec<String>,
}

/// An image attachment to append on its own page.
#[derive(Debug, Clone)]
pub struct Picture {
    pub caption: String,
    pub kind: PictureKind,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PictureKind {
    Png,
    Jpeg,
}

impl PictureKind {
    /// The kinds krilla can embed, by content type.
    pub fn of(content_type: &str) -> Option<PictureKind> {
        match content_type.to_ascii_lowercase().as_str() {
            "image/png" => Some(PictureKind::Png),
            "image/jpeg" | "image/jpg" | "image/pjpeg" => Some(PictureKind::Jpeg),
            _ => None,
        }
    }
}

/// Render the transcript. `pictures` are appended after the messages; one
/// that cannot be drawn is named on a last page instead. Errors only if
/// krilla refuses the document itself (not expected with the bundled font).
pub fn render(transcript: &Transcript, pictures: &[Picture]) -> Result<Vec<u8>, String> {
    let mut skipped: Vec<(String, String)> = Vec::new();
    let mut images: Vec<(String, Image)> = Vec::new();
    for p in pictures {
        let data = krilla::Data::from(p.data.clone());
        let image = match p.kind {
            PictureKind::Png => Image::from_png(data, true),
            PictureKind::Jpeg => Image::from_jpeg(data, true),
        };
        match image {
            Ok(img) => {
                let (w, h) = img.size();
                if u64::from(w) * u64::from(h) > MAX_IMAGE_PIXELS || w == 0 || h == 0 {
                    skipped.push((p.caption.clone(), format!("{w}×{h} pixels: too large")));
                } else {
                    images.push((p.caption.clone(), img));
                }
            }
            Err(e) => skipped.push((p.caption.clone(), format!("not readable: {e}"))),
        }
    }
    // krilla decodes images when the document is finished: an image whose
    // header read fine but whose data is broken fails the whole document.
    // Drop that one image, note why, and render again (at most once per image).
    loop {
        match render_once(transcript, &images, &skipped) {
            Ok(pdf) => return Ok(pdf),
            Err(KrillaError::Image(bad, _, why)) => {
                let Some(pos) = images.iter().position(|(_, img)| *img == bad) else {
                    return Err(format!("image error: {why}"));
                };
                let (caption, _) = images.remove(pos);
                skipped.push((caption, format!("not readable: {why}")));
            }
            Err(e) => return Err(format!("{e:?}")),
        }
    }
}

fn render_once(
    t: &Transcript,
    images: &[(String, Image)],
    skipped: &[(String, String)],
) -> Result<Vec<u8>, KrillaError> {
    let regular = Font::new(krilla::Data::from(REGULAR), 0)
        .ok_or_else(|| KrillaError::Validation(Vec::new()))?;
    let bold = Font::new(krilla::Data::from(BOLD), 0)
        .ok_or_else(|| KrillaError::Validation(Vec::new()))?;
    let fonts = Fonts { regular, bold };

    let mut doc = Document::new();
    doc.set_metadata(
        Metadata::new()
            .title(clean_line(&t.title))
            .creator("mailroom".to_string()),
    );

    let mut flow = Flow::default();
    flow.text(&fonts, Style::Title, &t.title);
    flow.gap(6.0);
    for (label, value) in &t.header {
        flow.field(&fonts, label, value);
    }
    for entry in &t.entries {
        flow.gap(10.0);
        flow.rule();
        flow.gap(4.0);
        let style = if entry.internal {
            Style::Internal
        } else {
            Style::Heading
        };
        flow.text(&fonts, style, &entry.heading);
        for (label, value) in &entry.fields {
            flow.field(&fonts, label, value);
        }
        flow.gap(4.0);
        flow.text(&fonts, Style::Body, &cut(&entry.body));
        if !entry.attachments.is_empty() {
            flow.gap(4.0);
            flow.text(&fonts, Style::Label, "Attachments:");
            for a in &entry.attachments {
                flow.text(&fonts, Style::Body, &format!("• {a}"));
            }
        }
    }
    if !skipped.is_empty() {
        flow.gap(10.0);
        flow.rule();
        flow.gap(4.0);
        flow.text(&fonts, Style::Heading, "Attachments listed but not drawn");
        for (caption, why) in skipped {
            flow.text(&fonts, Style::Body, &format!("• {caption}: {why}"));
        }
    }

    let footer = clean_line(&t.title);
    let pages = flow.pages.len() + images.len();
    for (n, page_items) in flow.pages.iter().enumerate() {
        let mut page = doc.start_page_with(page_settings());
        let mut surface = page.surface();
        for item in page_items {
            item.draw(&mut surface, &fonts);
        }
        draw_footer(&mut surface, &fonts, &footer, n + 1, pages);
        surface.finish();
        page.finish();
    }
    for (n, (caption, image)) in images.iter().enumerate() {
        let mut page = doc.start_page_with(page_settings());
        let mut surface = page.surface();
        let caption = fit(caption, Style::Label, TEXT_W);
        draw_line(
            &mut surface,
            &fonts,
            Style::Label,
            &caption,
            MARGIN,
            MARGIN + 10.0,
            false,
        );
        let (w, h) = image.size();
        let (max_w, max_h) = (TEXT_W, PAGE_H - 2.0 * MARGIN - 30.0);
        let scale = (max_w / w as f32).min(max_h / h as f32).min(1.0);
        if let Some(size) = Size::from_wh(w as f32 * scale, h as f32 * scale) {
            surface.push_transform(&Transform::from_translate(MARGIN, MARGIN + 25.0));
            surface.draw_image(image.clone(), size);
            surface.pop();
        }
        draw_footer(
            &mut surface,
            &fonts,
            &footer,
            flow.pages.len() + n + 1,
            pages,
        );
        surface.finish();
        page.finish();
    }
    doc.finish()
}

/// `TITLE — page n of N` at the bottom of a page.
fn draw_footer(surface: &mut Surface<'_>, fonts: &Fonts, title: &str, n: usize, of: usize) {
    let foot = format!("{title} — page {n} of {of}");
    draw_line(
        surface,
        fonts,
        Style::Small,
        &fit(&foot, Style::Small, TEXT_W),
        MARGIN,
        PAGE_H - MARGIN / 2.0,
        false,
    );
}

fn page_settings() -> PageSettings {
    // A4 is a valid size: `from_wh` fails only for non-positive sizes.
    PageSettings::from_wh(PAGE_W, PAGE_H).unwrap_or_default()
}

/// A body cut to [`MAX_BODY_CHARS`], saying how much was left out.
fn cut(body: &str) -> String {
    match body.char_indices().nth(MAX_BODY_CHARS) {
        None => body.to_string(),
        Some((at, _)) => {
            let rest = body[at..].chars().count();
            format!(
                "{}\n[… {rest} more characters not shown; download the .eml for the whole text]",
                &body[..at]
            )
        }
    }
}

// ---- styles and layout -------------------------------------------------------------

struct Fonts {
    regular: Font,
    bold: Font,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Title,
    Heading,
    Internal,
    Label,
    Body,
    Small,
}

impl Style {
    fn size(self) -> f32 {
        match self {
            Style::Title => 15.0,
            Style::Heading | Style::Internal => 11.0,
            Style::Label | Style::Body => 9.5,
            Style::Small => 7.5,
        }
    }

    fn bold(self) -> bool {
        matches!(
            self,
            Style::Title | Style::Heading | Style::Internal | Style::Label
        )
    }

    fn line_height(self) -> f32 {
        self.size() * 1.35
    }

    fn metrics(self) -> &'static Metrics {
        if self.bold() {
            &BOLD_METRICS
        } else {
            &REGULAR_METRICS
        }
    }

    fn color(self) -> rgb::Color {
        match self {
            Style::Internal => rgb::Color::new(170, 70, 0),
            Style::Small | Style::Label => rgb::Color::new(90, 90, 90),
            _ => rgb::Color::new(0, 0, 0),
        }
    }
}

/// Something placed on a page.
enum Item {
    Line {
        style: Style,
        text: String,
        x: f32,
        baseline: f32,
        rtl: bool,
    },
    Rule {
        y: f32,
    },
}

impl Item {
    fn draw(&self, surface: &mut Surface<'_>, fonts: &Fonts) {
        match self {
            Item::Line {
                style,
                text,
                x,
                baseline,
                rtl,
            } => draw_line(surface, fonts, *style, text, *x, *baseline, *rtl),
            Item::Rule { y } => {
                let mut pb = PathBuilder::new();
                pb.move_to(MARGIN, *y);
                pb.line_to(PAGE_W - MARGIN, *y);
                if let Some(path) = pb.finish() {
                    surface.set_fill(None);
                    surface.set_stroke(Some(Stroke {
                        paint: rgb::Color::new(180, 180, 180).into(),
                        width: 0.5,
                        ..Stroke::default()
                    }));
                    surface.draw_path(&path);
                    surface.set_stroke(None);
                }
            }
        }
    }
}

fn draw_line(
    surface: &mut Surface<'_>,
    fonts: &Fonts,
    style: Style,
    text: &str,
    x: f32,
    baseline: f32,
    rtl: bool,
) {
    if text.is_empty() {
        return;
    }
    let x = if rtl {
        (PAGE_W - MARGIN - style.metrics().width(text, style.size())).max(MARGIN)
    } else {
        x
    };
    surface.set_stroke(None);
    surface.set_fill(Some(Fill {
        paint: style.color().into(),
        opacity: NormalizedF32::ONE,
        rule: Default::default(),
    }));
    let font = if style.bold() {
        fonts.bold.clone()
    } else {
        fonts.regular.clone()
    };
    surface.draw_text(
        Point::from_xy(x, baseline),
        font,
        style.size(),
        text,
        false,
        TextDirection::Auto,
    );
}

/// Lays items out top to bottom, starting a new page when one is full.
struct Flow {
    pages: Vec<Vec<Item>>,
    /// The top of the next line.
    y: f32,
}

impl Default for Flow {
    fn default() -> Self {
        Flow {
            pages: vec![Vec::new()],
            y: MARGIN,
        }
    }
}

impl Flow {
    fn room_for(&mut self, height: f32) {
        if self.y + height > PAGE_H - MARGIN {
            self.pages.push(Vec::new());
            self.y = MARGIN;
        }
    }

    fn push(&mut self, item: Item) {
        if let Some(page) = self.pages.last_mut() {
            page.push(item);
        }
    }

    fn gap(&mut self, h: f32) {
        self.y += h;
    }

    fn rule(&mut self) {
        self.room_for(2.0);
        self.push(Item::Rule { y: self.y });
    }

    /// Wrapped paragraphs of text, in one style, from the left margin.
    fn text(&mut self, _fonts: &Fonts, style: Style, text: &str) {
        self.text_at(style, text, MARGIN, TEXT_W);
    }

    fn text_at(&mut self, style: Style, text: &str, x: f32, width: f32) {
        for paragraph in clean_text(text).split('\n') {
            let rtl = starts_rtl(paragraph);
            for line in wrap(paragraph, style, width) {
                let h = style.line_height();
                self.room_for(h);
                let baseline = self.y + style.size();
                self.push(Item::Line {
                    style,
                    text: line,
                    x,
                    baseline,
                    rtl,
                });
                self.y += h;
            }
        }
    }

    /// `Label: value`, the value wrapped beside the label's column.
    fn field(&mut self, _fonts: &Fonts, label: &str, value: &str) {
        const LABEL_W: f32 = 90.0;
        let label = fit(&format!("{label}:"), Style::Label, LABEL_W - 4.0);
        let style = Style::Body;
        self.room_for(style.line_height());
        let baseline = self.y + style.size();
        self.push(Item::Line {
            style: Style::Label,
            text: label,
            x: MARGIN,
            baseline,
            rtl: false,
        });
        let value = clean_line(value);
        if value.is_empty() {
            self.y += style.line_height();
        } else {
            self.text_at(style, &value, MARGIN + LABEL_W, TEXT_W - LABEL_W);
        }
    }
}

// ---- text ------------------------------------------------------------------------

/// Text made safe to draw: control characters removed (tabs → 4 spaces, CR
/// dropped, other line breaks → `\n`).
fn clean_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\t' => out.push_str("    "),
            '\n' | '\u{2028}' | '\u{2029}' | '\u{0B}' | '\u{0C}' | '\u{85}' => out.push('\n'),
            c if c.is_control() => {}
            // Bidi controls and zero-width format characters have no glyph.
            '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' => {}
            '\u{FEFF}' => {}
            c => out.push(c),
        }
    }
    out
}

/// One line: every line break and control character becomes a space.
fn clean_line(s: &str) -> String {
    clean_text(s).replace('\n', " ").trim().to_string()
}

/// Whether the first strong character is right-to-left (Hebrew, Arabic,
/// Syriac, Thaana, N'Ko and their presentation forms).
fn starts_rtl(s: &str) -> bool {
    s.chars()
        .find(|c| c.is_alphabetic())
        .is_some_and(|c| matches!(c as u32, 0x0590..=0x08FF | 0xFB1D..=0xFDFF | 0xFE70..=0xFEFF))
}

/// `text` cut with "…" to fit `width`.
fn fit(text: &str, style: Style, width: f32) -> String {
    let m = style.metrics();
    let size = style.size();
    let text = clean_line(text);
    if m.width(&text, size) <= width {
        return text;
    }
    let budget = width - m.width("…", size);
    let mut used = 0.0;
    let mut out = String::new();
    for c in text.chars() {
        used += m.char_width(c, size);
        if used > budget {
            break;
        }
        out.push(c);
    }
    out.push('…');
    out
}

/// Break one paragraph (no `\n`) into lines no wider than `width`: at
/// spaces, and inside a word only when the word alone is too wide. An empty
/// paragraph is one empty line (a blank line in the body).
fn wrap(paragraph: &str, style: Style, width: f32) -> Vec<String> {
    let m = style.metrics();
    let size = style.size();
    let space = m.char_width(' ', size);
    let mut lines = Vec::new();
    let mut line = String::new();
    let mut line_w = 0.0f32;
    for word in paragraph.split(' ') {
        let word_w = m.width(word, size);
        let sep = if line.is_empty() { 0.0 } else { space };
        if line_w + sep + word_w <= width {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
            line_w += sep + word_w;
            continue;
        }
        if !line.is_empty() {
            lines.push(std::mem::take(&mut line));
            line_w = 0.0;
        }
        if word_w <= width {
            line.push_str(word);
            line_w = word_w;
            continue;
        }
        // A word wider than the line (a URL, a base64 blob): break it.
        for c in word.chars() {
            let w = m.char_width(c, size);
            if line_w + w > width && !line.is_empty() {
                lines.push(std::mem::take(&mut line));
                line_w = 0.0;
            }
            line.push(c);
            line_w += w;
        }
    }
    lines.push(line);
    lines
}

// ---- font metrics ------------------------------------------------------------------

/// Glyph advances of a TrueType font, from its `cmap` (format 4 or 12) and
/// `hmtx` tables. Every read is bounds-checked; a font it cannot read gives
/// a conservative 0.6 em per character.
struct Metrics {
    units_per_em: f32,
    advances: Vec<u16>,
    glyphs: HashMap<u32, u16>,
}

impl Metrics {
    fn parse(font: &[u8]) -> Metrics {
        Self::try_parse(font).unwrap_or(Metrics {
            units_per_em: 1000.0,
            advances: Vec::new(),
            glyphs: HashMap::new(),
        })
    }

    fn try_parse(font: &[u8]) -> Option<Metrics> {
        let table = |tag: &[u8; 4]| -> Option<&[u8]> {
            let n = be16(font, 4)? as usize;
            (0..n).find_map(|i| {
                let rec = 12 + i * 16;
                if font.get(rec..rec + 4)? != tag {
                    return None;
                }
                let off = be32(font, rec + 8)? as usize;
                let len = be32(font, rec + 12)? as usize;
                font.get(off..off.checked_add(len)?)
            })
        };
        let head = table(b"head")?;
        let hhea = table(b"hhea")?;
        let hmtx = table(b"hmtx")?;
        let cmap = table(b"cmap")?;
        let units_per_em = f32::from(be16(head, 18)?.max(1));
        let metrics = be16(hhea, 34)? as usize;
        let advances = (0..metrics)
            .map(|i| be16(hmtx, i * 4))
            .collect::<Option<Vec<u16>>>()?;
        let glyphs = cmap_glyphs(cmap)?;
        Some(Metrics {
            units_per_em,
            advances,
            glyphs,
        })
    }

    /// The advance of `c` at `size` points (`.notdef`'s for a missing glyph).
    fn char_width(&self, c: char, size: f32) -> f32 {
        if self.advances.is_empty() {
            return 0.6 * size;
        }
        let glyph = self.glyphs.get(&(c as u32)).copied().unwrap_or(0) as usize;
        // Glyphs past the last metric share its advance (the `hmtx` rule).
        let advance = self
            .advances
            .get(glyph)
            .or(self.advances.last())
            .copied()
            .unwrap_or(0);
        f32::from(advance) / self.units_per_em * size
    }

    fn width(&self, text: &str, size: f32) -> f32 {
        text.chars().map(|c| self.char_width(c, size)).sum()
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Code point → glyph id, from the best Unicode subtable: format 12 (all
/// planes) if present, else format 4 (the BMP).
fn cmap_glyphs(cmap: &[u8]) -> Option<HashMap<u32, u16>> {
    let n = be16(cmap, 2)? as usize;
    let mut format4 = None;
    let mut format12 = None;
    for i in 0..n {
        let rec = 4 + i * 8;
        let (platform, encoding) = (be16(cmap, rec)?, be16(cmap, rec + 2)?);
        let sub = cmap.get(be32(cmap, rec + 4)? as usize..)?;
        let unicode = platform == 0 || (platform == 3 && (encoding == 1 || encoding == 10));
        match be16(sub, 0)? {
            12 if unicode => format12 = Some(sub),
            4 if unicode => format4 = Some(sub),
            _ => {}
        }
    }
    let mut map = HashMap::new();
    if let Some(sub) = format12 {
        let groups = be32(sub, 12)? as usize;
        for g in 0..groups.min(100_000) {
            let at = 16 + g * 12;
            let (start, end, glyph) = (be32(sub, at)?, be32(sub, at + 4)?, be32(sub, at + 8)?);
            for c in start..=end.min(start.saturating_add(0x10000)) {
                let gid = glyph.saturating_add(c - start);
                map.insert(c, u16::try_from(gid).unwrap_or(0));
            }
        }
        return Some(map);
    }
    let sub = format4?;
    let segs = be16(sub, 6)? as usize / 2;
    let ends = 14;
    let starts = ends + segs * 2 + 2;
    let deltas = starts + segs * 2;
    let ranges = deltas + segs * 2;
    for s in 0..segs {
        let end = be16(sub, ends + s * 2)?;
        let start = be16(sub, starts + s * 2)?;
        let delta = be16(sub, deltas + s * 2)?;
        let range = be16(sub, ranges + s * 2)? as usize;
        if start > end {
            continue;
        }
        for c in start..=end {
            if c == 0xFFFF {
                break;
            }
            let gid = if range == 0 {
                c.wrapping_add(delta)
            } else {
                let at = ranges + s * 2 + range + 2 * usize::from(c - start);
                match be16(sub, at) {
                    Some(0) | None => 0,
                    Some(g) => g.wrapping_add(delta),
                }
            };
            if gid != 0 {
                map.insert(u32::from(c), gid);
            }
        }
    }
    Some(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_fonts_have_metrics() {
        for m in [&*REGULAR_METRICS, &*BOLD_METRICS] {
            assert!(!m.advances.is_empty());
            // Latin, Cyrillic and Hebrew are in DejaVu Sans.
            for c in ['a', 'Ж', 'ש'] {
                assert!(m.glyphs.contains_key(&(c as u32)), "{c}");
            }
            let i = m.char_width('i', 10.0);
            let w = m.char_width('W', 10.0);
            assert!(i > 0.0 && w > i, "i {i}, W {w}");
        }
    }

    #[test]
    fn lines_fit_their_width() {
        let text = "word ".repeat(200) + &"x".repeat(500);
        for line in wrap(&text, Style::Body, 200.0) {
            assert!(REGULAR_METRICS.width(&line, Style::Body.size()) <= 200.0 + 0.01);
        }
        assert_eq!(wrap("", Style::Body, 100.0), [""]);
    }

    #[test]
    fn any_text_renders() {
        let hostile = format!(
            "{}\u{0}\u{1b}[31m\r\n\t\u{202E}evil\u{FEFF} 😀 中文 עברית العربية Ελληνικά Русский {}",
            "a".repeat(5000),
            "\n".repeat(300)
        );
        let t = Transcript {
            title: hostile.clone(),
            header: vec![
                ("Subject".into(), hostile.clone()),
                (String::new(), String::new()),
            ],
            entries: vec![
                Entry {
                    heading: "Incoming mail".into(),
                    body: hostile.clone(),
                    attachments: vec![hostile.clone()],
                    ..Entry::default()
                },
                Entry::default(),
            ],
        };
        let pictures = [Picture {
            caption: "broken.png".into(),
            kind: PictureKind::Png,
            data: b"\x89PNG\r\n\x1a\nnot really".to_vec(),
        }];
        let pdf = render(&t, &pictures).expect("renders");
        assert!(pdf.starts_with(b"%PDF-"));
        let empty = render(&Transcript::default(), &[]).expect("renders");
        assert!(empty.starts_with(b"%PDF-"));
    }
}

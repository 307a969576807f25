//! The YAML walk: an event stream with positions, one mapping frame at a
//! time, so every `image:` is found with its line whatever the schema.

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// One place an image is named.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImageUse {
    pub image: String,
    pub file: String,
    /// 1-based line of the `image` value.
    pub line: usize,
    /// The `imagePullPolicy` beside it, when there is one.
    pub pull_policy: Option<String>,
}

/// A document that did not parse: where, and why. Images found before the
/// error are still returned.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ParseFailure {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

#[derive(Debug, Default)]
pub struct ScanResult {
    pub uses: Vec<ImageUse>,
    pub failure: Option<ParseFailure>,
}

/// The scalars of one mapping (and nested helm-style `image` mappings).
#[derive(Default)]
struct MappingFrame {
    /// The key waiting for its value, when the next event is a value.
    pending_key: Option<String>,
    scalars: Vec<(String, String, usize)>,
    /// A helm-style `image: {registry, repository, tag}` found inside,
    /// with its line and its own `pullPolicy`.
    nested_image: Option<(String, usize, Option<String>)>,
}

enum Frame {
    Mapping(MappingFrame),
    Sequence,
}

struct Walker {
    file: String,
    stack: Vec<Frame>,
    uses: Vec<ImageUse>,
}

impl Walker {
    /// A value (scalar or collection) is starting in the current container:
    /// returns the key it belongs to, if the container is a mapping.
    fn take_key_for_value(&mut self) -> Option<String> {
        match self.stack.last_mut() {
            Some(Frame::Mapping(m)) => m.pending_key.take(),
            _ => None,
        }
    }

    fn scalar(&mut self, value: String, line: usize) {
        let Some(Frame::Mapping(m)) = self.stack.last_mut() else {
            return;
        };
        match m.pending_key.take() {
            None => m.pending_key = Some(value),
            Some(key) => m.scalars.push((key, value, line)),
        }
    }

    fn start_collection(&mut self, frame: Frame) {
        // A collection as a value consumes the pending key.
        let key = self.take_key_for_value();
        if let (Some(key), Frame::Mapping(_)) = (&key, &frame) {
            if key == "image" {
                // Remember that this mapping is an image: {…} value.
                let mut m = MappingFrame::default();
                m.scalars.push(("__image_value__".into(), String::new(), 0));
                self.stack.push(Frame::Mapping(m));
                return;
            }
        }
        self.stack.push(frame);
    }

    fn end_mapping(&mut self) {
        let Some(Frame::Mapping(m)) = self.stack.pop() else {
            return;
        };
        let get = |k: &str| m.scalars.iter().find(|(key, _, _)| key == k);
        if get("__image_value__").is_some() {
            // Helm values style: registry/repository/tag(/digest), the
            // repository also written `image` or `name` by some charts.
            let repository = ["repository", "image", "name"]
                .iter()
                .find_map(|k| get(k).filter(|(_, v, _)| !v.is_empty()));
            if let Some((_, repo, line)) = repository {
                let mut image = match get("registry") {
                    Some((_, reg, _)) if !reg.is_empty() => format!("{reg}/{repo}"),
                    _ => repo.clone(),
                };
                if let Some((_, tag, _)) = get("tag").filter(|(_, t, _)| !t.is_empty()) {
                    image = format!("{image}:{tag}");
                }
                if let Some((_, d, _)) = get("digest").filter(|(_, d, _)| !d.is_empty()) {
                    image = format!("{image}@{d}");
                }
                let policy = get("pullPolicy").map(|(_, p, _)| p.clone());
                if let Some(Frame::Mapping(parent)) = self.stack.last_mut() {
                    parent.nested_image = Some((image, *line, policy));
                }
            }
            return;
        }
        let policy = get("imagePullPolicy").map(|(_, v, _)| v.clone());
        let direct = get("image").map(|(_, v, l)| (v.clone(), *l, None));
        if let Some((image, line, own_policy)) = direct.or(m.nested_image) {
            // A values file keeps the policy beside the image: `pullPolicy`
            // in the image map, or `imagePullPolicy` next to it.
            let policy = policy.or(own_policy);
            if !image.trim().is_empty() {
                self.uses.push(ImageUse {
                    image: image.trim().to_string(),
                    file: self.file.clone(),
                    line,
                    pull_policy: policy,
                });
            }
        }
    }
}

impl MarkedEventReceiver for Walker {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(value, ..) => self.scalar(value, mark.line()),
            Event::MappingStart(..) => {
                self.start_collection(Frame::Mapping(MappingFrame::default()))
            }
            Event::SequenceStart(..) => self.start_collection(Frame::Sequence),
            Event::MappingEnd => self.end_mapping(),
            Event::SequenceEnd => {
                self.stack.pop();
            }
            Event::Alias(_) => {
                let _ = self.take_key_for_value();
            }
            _ => {}
        }
    }
}

/// Scan one file's text (any number of YAML or JSON documents).
pub fn scan_text(file: &str, text: &str) -> ScanResult {
    let mut walker = Walker {
        file: file.to_string(),
        stack: Vec::new(),
        uses: Vec::new(),
    };
    let mut parser = Parser::new_from_str(text);
    let failure = parser.load(&mut walker, true).err().map(|e| ParseFailure {
        file: file.to_string(),
        line: e.marker().line(),
        column: e.marker().col() + 1,
        message: e.to_string(),
    });
    ScanResult {
        uses: walker.uses,
        failure,
    }
}

//! Bounds on what a manifest may cost to read: its size, and how deeply it
//! nests, checked before the YAML parser sees it (deep nesting makes parsing
//! super-linear). Pure, apart from [`read_manifest`].

use std::io::Read;
use std::path::Path;

use super::Error;

/// The largest manifest file read.
pub const MAX_FILE_BYTES: u64 = 1 << 20;
/// The deepest nesting of mappings and lists a manifest may have.
pub const MAX_DEPTH: usize = 64;

/// Reads a manifest file, refusing one over [`MAX_FILE_BYTES`] before reading it.
pub fn read_manifest(path: &Path) -> Result<String, Error> {
    let read = |source| Error::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read)?;
    let size = file.metadata().map_err(read)?.len();
    if size > MAX_FILE_BYTES {
        return Err(Error::TooLarge {
            path: path.to_path_buf(),
            size,
        });
    }
    // The file may grow between the check and the read: read one byte more
    // than allowed at most.
    let mut text = String::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(read)?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(Error::TooLarge {
            path: path.to_path_buf(),
            size: text.len() as u64,
        });
    }
    Ok(text)
}

/// Refuses a text nested deeper than [`MAX_DEPTH`] (or over [`MAX_FILE_BYTES`]).
pub fn check(path: &Path, text: &str) -> Result<(), Error> {
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(Error::TooLarge {
            path: path.to_path_buf(),
            size: text.len() as u64,
        });
    }
    let depth = nesting_depth(text, MAX_DEPTH);
    if depth > MAX_DEPTH {
        return Err(Error::TooDeep {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// An upper estimate of how deeply `text` (YAML or JSON) nests: block
/// indentation levels, `- ` entries opened on one line, and flow brackets
/// outside quotes and comments. Stops counting once past `limit`.
pub fn nesting_depth(text: &str, limit: usize) -> usize {
    let mut indents: Vec<usize> = Vec::new();
    let mut flow = 0usize;
    let mut quote: Option<char> = None;
    let mut block_scalar: Option<usize> = None;
    let mut max = 0usize;
    for line in text.lines() {
        let trimmed = line.trim_start_matches([' ', '\t']);
        let indent = line.len() - trimmed.len();
        if let Some(at) = block_scalar {
            if trimmed.is_empty() || indent > at {
                continue;
            }
            block_scalar = None;
        }
        if quote.is_none() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        let mut rest = trimmed;
        let mut dashes = 0;
        if quote.is_none() && flow == 0 {
            while indents.last().is_some_and(|&i| i >= indent) {
                indents.pop();
            }
            indents.push(indent);
            while let Some(r) = rest.strip_prefix("- ").or_else(|| rest.strip_prefix("-\t")) {
                dashes += 1;
                rest = r.trim_start_matches([' ', '\t']);
            }
        }
        let mut line_max = flow;
        let mut prev = ' ';
        let mut chars = rest.chars().peekable();
        while let Some(c) = chars.next() {
            match quote {
                Some('"') if c == '\\' => {
                    chars.next();
                }
                Some(q) if c == q => {
                    if q == '\'' && chars.peek() == Some(&'\'') {
                        chars.next();
                    } else {
                        quote = None;
                    }
                }
                Some(_) => {}
                None => match c {
                    '"' | '\'' if prev == ' ' || "[{,:".contains(prev) => quote = Some(c),
                    '#' if prev == ' ' || prev == '\t' => break,
                    '[' | '{' => {
                        flow += 1;
                        line_max = line_max.max(flow);
                    }
                    ']' | '}' => flow = flow.saturating_sub(1),
                    _ => {}
                },
            }
            prev = c;
        }
        if quote.is_none() && flow == 0 {
            let end = rest.trim_end();
            let scalar = end.rsplit([' ', '\t']).next().unwrap_or_default();
            if scalar.starts_with(['|', '>'])
                && scalar[1..]
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == '-' || c == '+')
            {
                block_scalar = Some(indent);
            }
        }
        max = max.max(indents.len() + dashes + line_max);
        if max > limit {
            return max;
        }
    }
    max
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_manifest_is_shallow() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/tenants/acme.yaml"
        ))
        .unwrap();
        let d = nesting_depth(&text, MAX_DEPTH);
        assert!((3..=10).contains(&d), "{d}");
    }

    #[test]
    fn flow_block_and_dash_nesting_are_counted() {
        assert!(nesting_depth(&"[".repeat(100), 64) > 64);
        assert!(nesting_depth(&"{a: ".repeat(100), 64) > 64);
        assert!(nesting_depth(&format!("{}x", "- ".repeat(100)), 64) > 64);
        let block: String = (0..100).map(|i| format!("{}k:\n", " ".repeat(i))).collect();
        assert!(nesting_depth(&block, 64) > 64);
    }

    #[test]
    fn brackets_in_quotes_comments_and_block_scalars_are_text() {
        let text = format!(
            "a: \"{0}\"\nb: '{0}'\nc: 1 # {0}\nd: |\n  {0}\n  {0}\ne: 2\n",
            "[".repeat(100)
        );
        assert!(
            nesting_depth(&text, 64) <= 2,
            "{}",
            nesting_depth(&text, 64)
        );
    }

    #[test]
    fn too_deep_and_too_large_are_refused_naming_the_file() {
        let p = Path::new("deep.yaml");
        let err = check(p, &"[".repeat(1000)).unwrap_err();
        assert!(err.to_string().contains("deep.yaml"), "{err}");
        assert!(err.to_string().contains("64"), "{err}");
        let big = "a".repeat(MAX_FILE_BYTES as usize + 1);
        let err = check(p, &big).unwrap_err();
        assert!(err.to_string().contains("1 MiB"), "{err}");
    }
}

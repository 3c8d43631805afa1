//! A store failure at start-up in an operator's words: what is wrong, what to check, and the
//! store's own answer on one line.

use super::MediaError;

/// The longest the store's answer may be in the message, in characters.
const MAX_ANSWER: usize = 300;

/// `hint (what failed: the store's answer)`. For an S3 error the answer is its code and
/// message (`InvalidAccessKeyId: The AWS Access Key Id you provided does not exist …`), never
/// the response body: a `SignatureDoesNotMatch` body carries the string that was signed.
/// Otherwise it is the root cause's first line. No credential is part of either.
pub fn explain(error: &MediaError) -> String {
    let hint = match error {
        MediaError::Refused {
            source:
                object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. },
            ..
        } => {
            "the bucket refused reel's credentials: check AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN, AWS_REGION), and that the key may \
             read, write, list and delete in the bucket"
        }
        MediaError::Refused {
            source: object_store::Error::NotFound { .. },
            ..
        } => "the bucket does not exist: create it, or fix the name in --storage",
        MediaError::Unavailable { .. } => {
            "no answer from the bucket: check --s3-endpoint (or AWS_REGION) and the network"
        }
        MediaError::Refused { .. } => "the bucket refused the request",
        MediaError::Prepare { .. } | MediaError::Io { .. } => "the media dir cannot be written",
        MediaError::Fenced => "a lease was lost",
    };
    format!("{hint} ({})", answer(error))
}

/// The error's own text, then the S3 code and message found in its causes, or else its root
/// cause up to the first line break; cut at [`MAX_ANSWER`] characters.
pub fn answer(error: &MediaError) -> String {
    let mut causes: Vec<String> = Vec::new();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    let mut line = error.to_string();
    if let Some((code, message)) = causes.iter().find_map(|text| s3_error(text)) {
        line.push_str(&format!(": the bucket answered {code}: {message}"));
    } else if let Some(root) = causes.last() {
        // The root cause says what happened (`Connection refused`); the layers between only
        // repeat the request.
        let first = root.lines().next().unwrap_or_default().trim();
        if !first.is_empty() && !line.contains(first) {
            line.push_str(": ");
            line.push_str(first);
        }
    }
    match line.char_indices().nth(MAX_ANSWER) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line,
    }
}

/// `<Code>` and `<Message>` of an S3 error document inside `text`.
fn s3_error(text: &str) -> Option<(String, String)> {
    let element = |name: &str| {
        let open = format!("<{name}>");
        let start = text.find(&open)? + open.len();
        let end = start + text[start..].find(&format!("</{name}>"))?;
        Some(unescape(text[start..end].trim()))
    };
    let code = element("Code")?;
    Some((code, element("Message").unwrap_or_default()))
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(body: &str) -> MediaError {
        MediaError::Refused {
            what: "p/.reel-check-1".into(),
            source: object_store::Error::PermissionDenied {
                path: "p/.reel-check-1".into(),
                source: format!("Server returned non-2xx status code: 403 Forbidden: {body}")
                    .into(),
            },
        }
    }

    #[test]
    fn an_s3_refusal_is_its_code_and_message_on_one_line() {
        let body = "<?xml version=\"1.0\"?>\n<Error><Code>SignatureDoesNotMatch</Code>\
                    <Message>The request signature we calculated does not match</Message>\
                    <StringToSign>AWS4-HMAC-SHA256\n20260101T000000Z</StringToSign></Error>";
        let text = explain(&refused(body));
        assert!(
            text.starts_with("the bucket refused reel's credentials: check AWS_ACCESS_KEY_ID"),
            "{text}"
        );
        assert!(
            text.ends_with(
                "(the bucket refused p/.reel-check-1: the bucket answered \
                 SignatureDoesNotMatch: The request signature we calculated does not match)"
            ),
            "{text}"
        );
        assert!(
            !text.contains('\n') && !text.contains("StringToSign"),
            "{text}"
        );
    }

    #[test]
    fn otherwise_the_root_cause_is_kept_on_one_line_and_bounded() {
        let text = explain(&refused(&format!("line one\n{}", "x".repeat(1000))));
        assert!(text.contains("403 Forbidden: line one)"), "{text}");
        assert!(!text.contains('\n'));
        let long = explain(&refused(&"y".repeat(1000)));
        assert!(long.ends_with("…)"), "{long}");
    }
}

//! `?property.NAME=VALUE` on `GET /api/v1/videos`: filters by the declared properties, and
//! their parameters in the OpenAPI document (one per property this server declares).

use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{OpenApi, Required};

use crate::error::ApiError;
use crate::properties::MAX_VALUE_BYTES;

const PREFIX: &str = "property.";

/// The `property.NAME=VALUE` pairs of a query string, values as text (the store compares each
/// with the stored value's text: `42`, `true`, `DE`). A name no property has, a repeated name
/// or a value over [`MAX_VALUE_BYTES`] is a 400.
pub fn property_filters(
    query: &str,
    declared: &[String],
) -> Result<Vec<(String, serde_json::Value)>, ApiError> {
    let mut filters: Vec<(String, serde_json::Value)> = Vec::new();
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let Some(name) = key.strip_prefix(PREFIX) else {
            continue;
        };
        if !declared.iter().any(|d| d == name) {
            let known = if declared.is_empty() {
                "this server declares none".to_owned()
            } else {
                format!("declared: {}", declared.join(", "))
            };
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("`{key}`: there is no property named {name:?} ({known})."),
            ));
        }
        if filters.iter().any(|(n, _)| n == name) {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("`{key}` is given more than once."),
            ));
        }
        if value.len() > MAX_VALUE_BYTES {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("`{key}` must be at most {MAX_VALUE_BYTES} bytes."),
            ));
        }
        filters.push((
            name.to_owned(),
            serde_json::Value::String(value.into_owned()),
        ));
    }
    Ok(filters)
}

/// Documents one `property.NAME` query parameter per declared property on the list.
pub fn document_filters(document: &mut OpenApi, declared: &[String]) {
    let Some(list) = document
        .paths
        .paths
        .get_mut("/api/v1/videos")
        .and_then(|item| item.get.as_mut())
    else {
        return;
    };
    let parameters = list.parameters.get_or_insert_with(Vec::new);
    for name in declared {
        let schema = ObjectBuilder::new()
            .schema_type(Type::String)
            .max_length(Some(MAX_VALUE_BYTES));
        let parameter = ParameterBuilder::new()
            .name(format!("{PREFIX}{name}"))
            .parameter_in(ParameterIn::Query)
            .required(Required::False)
            .description(Some(format!(
                "Only videos whose property `{name}` equals this, compared as text (`42`, `true`)."
            )))
            .schema(Some(schema))
            .build();
        parameters.push(parameter.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_name_declared_properties_once() {
        let declared = vec!["tier".to_owned(), "height".to_owned()];
        let found = property_filters("limit=5&property.tier=pro&property.height=1080", &declared)
            .expect("valid");
        assert_eq!(
            found,
            vec![
                ("tier".into(), serde_json::json!("pro")),
                ("height".into(), serde_json::json!("1080"))
            ]
        );
        assert_eq!(
            property_filters("property.tier=a%20b", &declared).expect("decoded")[0].1,
            "a b"
        );
        for bad in [
            "property.nope=1",
            "property.tier=a&property.tier=b",
            "property.=x",
        ] {
            let error = property_filters(bad, &declared).expect_err(bad);
            assert_eq!(error.code(), "invalid_query", "{bad}");
        }
        let long = format!("property.tier={}", "x".repeat(MAX_VALUE_BYTES + 1));
        assert!(property_filters(&long, &declared).is_err());
    }
}

//! Procedural macros of the Tributary Rust SDK: `#[task]` and `workflow!`.
//! Use them through the `tributary` crate, which re-exports both and
//! documents them; the generated code names `::tributary`.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote};
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, ItemFn, Lit, LitStr, MetaNameValue, Path, Token, UnOp};
use tributary_core::{
    BACKOFFS, Labels, MAP_MAX_INSTANCES_LIMIT, MAX_DELAY_MS, MAX_IN_FLIGHT, MAX_RETRY_ATTEMPTS,
    MAX_TIMEOUT_MS, TRIGGER_RULES, check_labels, is_valid_handler, is_valid_identifier,
    normalize_map,
};

const ATTRIBUTES: &str = "id, dependencies, retry_attempts, retry_delay_ms, retry_backoff, retry_max_delay_ms, retry_jitter, timeout_ms, trigger_rule, handler, required_labels, max_in_flight, map_over, map_output, map_max_instances";

/// Marks `async fn f(context: &mut Context<serde_json::Value>) -> Result<(), TaskError>`
/// as a task and generates `fn f_task() -> tributary::Task`. See the
/// `tributary` crate for the attributes.
///
/// ```
/// use tributary::{task, Context, TaskError};
///
/// #[task(id = "load", dependencies = ["extract"], retry_attempts = 2, retry_backoff = "fixed")]
/// async fn load(context: &mut Context<serde_json::Value>) -> Result<(), TaskError> {
///     context.insert("loaded", true)?;
///     Ok(())
/// }
///
/// assert_eq!(load_task().definition().retry_backoff, "fixed");
/// ```
#[proc_macro_attribute]
pub fn task(attributes: TokenStream, item: TokenStream) -> TokenStream {
    let item = TokenStream2::from(item);
    match expand_task(attributes.into(), item.clone()) {
        Ok(tokens) => tokens.into(),
        // Keep the function, so the only error is the attribute's.
        Err(error) => {
            let error = error.to_compile_error();
            quote!(#error #item).into()
        }
    }
}

/// `workflow!("name", [f, g])` builds a `tributary::Workflow` from tasks
/// written with `#[task]`.
///
/// ```
/// use tributary::{task, Context, TaskError};
///
/// #[task(id = "only")]
/// async fn only(_context: &mut Context<serde_json::Value>) -> Result<(), TaskError> {
///     Ok(())
/// }
///
/// let workflow = tributary::workflow!("single", [only]);
/// assert_eq!(workflow.tasks()[0].id(), "only");
/// ```
#[proc_macro]
pub fn workflow(input: TokenStream) -> TokenStream {
    match syn::parse::<WorkflowInput>(input) {
        Ok(input) => input.expand().into(),
        Err(error) => error.to_compile_error().into(),
    }
}

#[derive(Default)]
struct TaskAttributes {
    id: Option<LitStr>,
    dependencies: Vec<LitStr>,
    retry_attempts: Option<i64>,
    retry_delay_ms: Option<i64>,
    retry_backoff: Option<LitStr>,
    retry_max_delay_ms: Option<i64>,
    retry_jitter: Option<bool>,
    timeout_ms: Option<i64>,
    max_in_flight: Option<i64>,
    trigger_rule: Option<LitStr>,
    handler: Option<LitStr>,
    required_labels: Vec<(LitStr, LitStr)>,
    map_over: Option<LitStr>,
    map_output: Option<LitStr>,
    map_max_instances: Option<i64>,
}

fn expand_task(attributes: TokenStream2, item: TokenStream2) -> syn::Result<TokenStream2> {
    let function: ItemFn = syn::parse2(item)?;
    if function.sig.asyncness.is_none() {
        return Err(syn::Error::new(
            function.sig.fn_token.span(),
            "#[task] needs an `async fn(context: &mut Context<serde_json::Value>) -> Result<(), TaskError>`",
        ));
    }
    if function.sig.inputs.len() != 1 {
        return Err(syn::Error::new(
            function.sig.inputs.span(),
            "a #[task] function takes exactly one argument: `context: &mut Context<serde_json::Value>`",
        ));
    }
    let parsed = Punctuated::<MetaNameValue, Token![,]>::parse_terminated.parse2(attributes)?;
    let mut attributes = TaskAttributes::default();
    let mut seen: Vec<String> = Vec::new();
    let mut max_delay_span = Span::call_site();
    for meta in parsed {
        let name = meta
            .path
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_default();
        if seen.contains(&name) {
            return Err(syn::Error::new(
                meta.path.span(),
                format!("duplicate attribute `{name}`"),
            ));
        }
        let value = &meta.value;
        match name.as_str() {
            "id" => {
                let id = string(value, "id")?;
                if !is_valid_identifier(&id.value()) {
                    return Err(syn::Error::new(
                        id.span(),
                        format!(
                            "invalid task id {:?}: must be 1-64 characters of a-z, 0-9, _ and -, starting with a letter",
                            id.value()
                        ),
                    ));
                }
                attributes.id = Some(id);
            }
            "dependencies" => attributes.dependencies = dependencies(value)?,
            "retry_attempts" => {
                attributes.retry_attempts =
                    Some(integer(value, "retry_attempts", 0, MAX_RETRY_ATTEMPTS)?)
            }
            "retry_delay_ms" => {
                attributes.retry_delay_ms = Some(integer(value, "retry_delay_ms", 0, MAX_DELAY_MS)?)
            }
            "retry_max_delay_ms" => {
                max_delay_span = value.span();
                attributes.retry_max_delay_ms =
                    Some(integer(value, "retry_max_delay_ms", 0, MAX_DELAY_MS)?)
            }
            "timeout_ms" => {
                attributes.timeout_ms = Some(integer(value, "timeout_ms", 1, MAX_TIMEOUT_MS)?)
            }
            "max_in_flight" => {
                attributes.max_in_flight = Some(integer(value, "max_in_flight", 1, MAX_IN_FLIGHT)?)
            }
            "retry_backoff" => {
                attributes.retry_backoff = Some(one_of(value, "retry_backoff", &BACKOFFS)?)
            }
            "trigger_rule" => {
                attributes.trigger_rule = Some(one_of(value, "trigger_rule", &TRIGGER_RULES)?)
            }
            "retry_jitter" => attributes.retry_jitter = Some(boolean(value, "retry_jitter")?),
            "handler" => {
                let handler = string(value, "handler")?;
                if !is_valid_handler(&handler.value()) {
                    return Err(syn::Error::new(
                        handler.span(),
                        format!(
                            "invalid handler {:?}: must be 1-128 characters of a-z, A-Z, 0-9, _, -, ., : and /",
                            handler.value()
                        ),
                    ));
                }
                attributes.handler = Some(handler);
            }
            "required_labels" => attributes.required_labels = required_labels(value)?,
            "map_over" => attributes.map_over = Some(string(value, "map_over")?),
            "map_output" => attributes.map_output = Some(string(value, "map_output")?),
            "map_max_instances" => {
                attributes.map_max_instances = Some(integer(
                    value,
                    "map_max_instances",
                    1,
                    MAP_MAX_INSTANCES_LIMIT,
                )?)
            }
            _ => {
                return Err(syn::Error::new(
                    meta.path.span(),
                    format!(
                        "unknown attribute `{}`; expected one of {ATTRIBUTES}",
                        meta.path
                            .segments
                            .iter()
                            .map(|segment| segment.ident.to_string())
                            .collect::<Vec<_>>()
                            .join("::")
                    ),
                ));
            }
        }
        seen.push(name);
    }
    if let (Some(delay), Some(max)) = (attributes.retry_delay_ms, attributes.retry_max_delay_ms)
        && max < delay
    {
        return Err(syn::Error::new(
            max_delay_span,
            format!("retry_max_delay_ms ({max}) must be at least retry_delay_ms ({delay})"),
        ));
    }

    let literal = |value: &Option<LitStr>| value.as_ref().map(LitStr::value).unwrap_or_default();
    // The id only fills in map_output's default, which any valid id passes.
    if let Err(error) = normalize_map(
        "task",
        &literal(&attributes.map_over),
        &literal(&attributes.map_output),
        attributes.map_max_instances,
    ) {
        let span = attributes
            .map_over
            .as_ref()
            .or(attributes.map_output.as_ref())
            .map_or_else(Span::call_site, LitStr::span);
        return Err(syn::Error::new(span, error.to_string()));
    }

    let name = &function.sig.ident;
    let visibility = &function.vis;
    let constructor = format_ident!("{}_task", name);
    let id = match &attributes.id {
        Some(id) => id.clone(),
        None => {
            let id = name.to_string();
            if !is_valid_identifier(&id) {
                return Err(syn::Error::new(
                    name.span(),
                    "this function's name is not a valid task id; give one with `id = \"...\"`",
                ));
            }
            LitStr::new(&id, name.span())
        }
    };
    let dependencies = &attributes.dependencies;
    let option_i64 = |value: Option<i64>| match value {
        Some(value) => quote!(::core::option::Option::Some(#value)),
        None => quote!(::core::option::Option::None),
    };
    let retry_attempts = option_i64(attributes.retry_attempts);
    let retry_delay_ms = option_i64(attributes.retry_delay_ms);
    let retry_max_delay_ms = option_i64(attributes.retry_max_delay_ms);
    let timeout_ms = option_i64(attributes.timeout_ms);
    let max_in_flight = option_i64(attributes.max_in_flight);
    let retry_jitter = match attributes.retry_jitter {
        Some(value) => quote!(::core::option::Option::Some(#value)),
        None => quote!(::core::option::Option::None),
    };
    let text = |value: &Option<LitStr>| match value {
        Some(value) => quote!(::std::string::String::from(#value)),
        None => quote!(::std::string::String::new()),
    };
    let retry_backoff = text(&attributes.retry_backoff);
    let trigger_rule = text(&attributes.trigger_rule);
    let handler = text(&attributes.handler);
    let map_over = text(&attributes.map_over);
    let map_output = text(&attributes.map_output);
    let map_max_instances = option_i64(attributes.map_max_instances);
    let label_keys = attributes.required_labels.iter().map(|(key, _)| key);
    let label_values = attributes.required_labels.iter().map(|(_, value)| value);
    let documentation = format!(
        "The task `{}` (see [`{name}`]), generated by `#[task]`.",
        id.value()
    );

    Ok(quote! {
        #function

        #[doc = #documentation]
        #visibility fn #constructor() -> ::tributary::Task {
            fn handler<'a>(
                context: &'a mut ::tributary::Context<::tributary::serde_json::Value>,
            ) -> ::tributary::TaskFuture<'a> {
                ::std::boxed::Box::pin(#name(context))
            }
            ::tributary::Task::from_definition(
                ::tributary::TaskDefinition {
                    id: ::std::string::String::from(#id),
                    dependencies: ::std::vec![#(::std::string::String::from(#dependencies)),*],
                    retry_attempts: #retry_attempts,
                    retry_delay_ms: #retry_delay_ms,
                    retry_backoff: #retry_backoff,
                    retry_max_delay_ms: #retry_max_delay_ms,
                    retry_jitter: #retry_jitter,
                    timeout_ms: #timeout_ms,
                    trigger_rule: #trigger_rule,
                    handler: #handler,
                    required_labels: ::tributary::Labels::from([
                        #((::std::string::String::from(#label_keys), ::std::string::String::from(#label_values))),*
                    ]),
                    max_in_flight: #max_in_flight,
                    map_over: #map_over,
                    map_output: #map_output,
                    map_max_instances: #map_max_instances,
                },
                handler,
            )
        }
    })
}

fn string(value: &Expr, name: &str) -> syn::Result<LitStr> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(text),
            ..
        }) => Ok(text.clone()),
        other => Err(syn::Error::new(
            other.span(),
            format!("`{name}` must be a string literal"),
        )),
    }
}

fn dependencies(value: &Expr) -> syn::Result<Vec<LitStr>> {
    let Expr::Array(array) = value else {
        return Err(syn::Error::new(
            value.span(),
            "`dependencies` must be a list of task ids: `[\"a\", \"b\"]`",
        ));
    };
    array
        .elems
        .iter()
        .map(|element| match element {
            Expr::Lit(ExprLit {
                lit: Lit::Str(text),
                ..
            }) => Ok(text.clone()),
            other => Err(syn::Error::new(
                other.span(),
                "a dependency must be a task id as a string literal, e.g. `\"generate_data\"`",
            )),
        })
        .collect()
}

/// `required_labels = [("gpu", "true"), ("region", "eu")]`: each key once,
/// checked with the server's rule of labels.
fn required_labels(value: &Expr) -> syn::Result<Vec<(LitStr, LitStr)>> {
    let shape =
        "`required_labels` must be a list of (key, value) string pairs: `[(\"gpu\", \"true\")]`";
    let Expr::Array(array) = value else {
        return Err(syn::Error::new(value.span(), shape));
    };
    let mut pairs = Vec::new();
    let mut labels = Labels::new();
    for element in &array.elems {
        let Expr::Tuple(tuple) = element else {
            return Err(syn::Error::new(element.span(), shape));
        };
        let [key, value] = [tuple.elems.first(), tuple.elems.get(1)];
        let (Some(key), Some(value), 2) = (key, value, tuple.elems.len()) else {
            return Err(syn::Error::new(tuple.span(), shape));
        };
        let key = string(key, "a required label's key")?;
        let value = string(value, "a required label's value")?;
        if labels.insert(key.value(), value.value()).is_some() {
            return Err(syn::Error::new(
                key.span(),
                format!("required label {:?} is given more than once", key.value()),
            ));
        }
        pairs.push((key, value));
    }
    if let Err(error) = check_labels(&labels) {
        return Err(syn::Error::new(
            value.span(),
            format!("required_labels {error}"),
        ));
    }
    Ok(pairs)
}

fn integer(value: &Expr, name: &str, min: i64, max: i64) -> syn::Result<i64> {
    let out_of_range = |span: Span, shown: String| {
        syn::Error::new(
            span,
            format!("`{name}` must be between {min} and {max}, got {shown}"),
        )
    };
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(number),
            ..
        }) => {
            let parsed: i64 = number
                .base10_parse()
                .map_err(|_| out_of_range(number.span(), number.to_string()))?;
            if (min..=max).contains(&parsed) {
                Ok(parsed)
            } else {
                Err(out_of_range(number.span(), parsed.to_string()))
            }
        }
        Expr::Unary(unary) if matches!(unary.op, UnOp::Neg(_)) => Err(syn::Error::new(
            unary.span(),
            format!("`{name}` must not be negative"),
        )),
        other => Err(syn::Error::new(
            other.span(),
            format!("`{name}` must be an integer literal"),
        )),
    }
}

fn boolean(value: &Expr, name: &str) -> syn::Result<bool> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Bool(flag),
            ..
        }) => Ok(flag.value),
        other => Err(syn::Error::new(
            other.span(),
            format!("`{name}` must be `true` or `false`"),
        )),
    }
}

fn one_of(value: &Expr, name: &str, allowed: &[&str]) -> syn::Result<LitStr> {
    let text = string(value, name)?;
    if allowed.contains(&text.value().as_str()) {
        Ok(text)
    } else {
        Err(syn::Error::new(
            text.span(),
            format!(
                "unknown {name} {:?}; expected one of {}",
                text.value(),
                allowed.join(", ")
            ),
        ))
    }
}

struct WorkflowInput {
    name: Expr,
    tasks: Vec<Path>,
}

impl Parse for WorkflowInput {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let name: Expr = input.parse()?;
        input.parse::<Token![,]>()?;
        let content;
        syn::bracketed!(content in input);
        let tasks = Punctuated::<Path, Token![,]>::parse_terminated(&content)?
            .into_iter()
            .collect();
        if input.peek(Token![,]) {
            input.parse::<Token![,]>()?;
        }
        Ok(WorkflowInput { name, tasks })
    }
}

impl WorkflowInput {
    fn expand(self) -> TokenStream2 {
        let name = self.name;
        let constructors = self.tasks.into_iter().map(|mut path| {
            if let Some(last) = path.segments.last_mut() {
                last.ident = format_ident!("{}_task", last.ident);
            }
            path
        });
        quote! {
            ::tributary::Workflow::new(#name) #(.task(#constructors()))*
        }
    }
}

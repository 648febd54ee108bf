//! # liveagent-macros
//!
//! `#[tool]`: the Rust form of the Python seed's `@agent.tool`. Put it on a documented
//! `async fn`; it becomes a function of the same name returning a `liveagent_tools::Tool`
//! whose arguments are the function's parameters (an argument struct is generated, with a
//! `serde::Deserialize` + `schemars::JsonSchema` derive) and whose description is the doc
//! comment. Use it through `liveagent_tools::tool` (re-exported there).
//!
//! ```ignore
//! use liveagent_tools::{tool, Tool, ToolError};
//!
//! /// Sum two numbers.
//! ///
//! /// # Arguments
//! /// * `a` - The first number.
//! /// * `b` - The second number.
//! #[tool]
//! async fn sum_numbers(a: i64, b: i64) -> Result<i64, ToolError> {
//!     Ok(a + b)
//! }
//!
//! let t: Tool = sum_numbers();
//! ```
//!
//! - The text before an `# Arguments` heading is the tool's description; the list under it
//!   (`* `name` - text`, `- `name`: text`) describes the parameters in the schema.
//! - Parameters are plain `name: Type` pairs whose types are `Deserialize + JsonSchema`
//!   (`Option<T>` parameters are optional). A parameter of type `ToolContext` is not part of
//!   the schema: it receives the call's context (dependencies, call id, conversation).
//! - The function returns `Result<T, E>` (`T: Serialize`, `E: Into<ToolError>`) or a plain
//!   `T: Serialize`.
//! - Options: `#[tool(name = "other_name", timeout_ms = 5000, crate = path::to::liveagent_tools)]`.

#![warn(missing_docs)]

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote, ToTokens};
use syn::{parse_macro_input, Expr, FnArg, ItemFn, Lit, LitStr, Meta, Pat, ReturnType, Type};

/// Turns a documented `async fn` into a constructor of a `liveagent_tools::Tool`
/// (see the [crate docs](crate)).
#[proc_macro_attribute]
pub fn tool(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut options = Options::default();
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("name") {
            options.name = Some(meta.value()?.parse::<LitStr>()?.value());
            Ok(())
        } else if meta.path.is_ident("timeout_ms") {
            options.timeout_ms = Some(meta.value()?.parse::<syn::LitInt>()?.base10_parse()?);
            Ok(())
        } else if meta.path.is_ident("crate") {
            options.krate = Some(meta.value()?.parse::<syn::Path>()?);
            Ok(())
        } else {
            Err(meta.error("unknown #[tool] option; expected `name`, `timeout_ms` or `crate`"))
        }
    });
    parse_macro_input!(attr with parser);
    let function = parse_macro_input!(item as ItemFn);
    match expand(options, function) {
        Ok(tokens) => tokens.into(),
        Err(err) => err.to_compile_error().into(),
    }
}

#[derive(Default)]
struct Options {
    name: Option<String>,
    timeout_ms: Option<u64>,
    krate: Option<syn::Path>,
}

/// The doc comment lines of `attrs`.
fn doc_lines(attrs: &[syn::Attribute]) -> Vec<String> {
    attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .filter_map(|a| match &a.meta {
            Meta::NameValue(nv) => match &nv.value {
                Expr::Lit(syn::ExprLit {
                    lit: Lit::Str(s), ..
                }) => Some(s.value()),
                _ => None,
            },
            _ => None,
        })
        .map(|line| line.strip_prefix(' ').unwrap_or(&line).to_owned())
        .collect()
}

/// Splits the doc into the description and `(param, text)` pairs from `# Arguments`.
fn split_doc(lines: &[String]) -> (String, Vec<(String, String)>) {
    let mut description = Vec::new();
    let mut params: Vec<(String, String)> = Vec::new();
    let mut in_args = false;
    for line in lines {
        let trimmed = line.trim();
        if trimmed.starts_with('#') {
            let heading = trimmed.trim_start_matches('#').trim().to_ascii_lowercase();
            in_args = matches!(heading.as_str(), "arguments" | "args" | "parameters");
            if !in_args {
                // Another section (Examples, Errors...): not for the model.
                if !description.is_empty() {
                    break;
                }
            }
            continue;
        }
        if in_args {
            let item = trimmed
                .strip_prefix("* ")
                .or_else(|| trimmed.strip_prefix("- "));
            match item {
                Some(item) => {
                    let item = item.trim();
                    let (name, rest) = if let Some(after) = item.strip_prefix('`') {
                        match after.split_once('`') {
                            Some((n, r)) => (n.to_owned(), r),
                            None => continue,
                        }
                    } else {
                        match item.split_once([' ', ':']) {
                            Some((n, r)) => (n.to_owned(), r),
                            None => continue,
                        }
                    };
                    let text = rest
                        .trim()
                        .trim_start_matches([':', '-', '–', '—'])
                        .trim()
                        .to_owned();
                    params.push((name, text));
                }
                None if !trimmed.is_empty() => {
                    if let Some(last) = params.last_mut() {
                        last.1.push(' ');
                        last.1.push_str(trimmed);
                    }
                }
                None => {}
            }
        } else {
            description.push(line.trim_end().to_owned());
        }
    }
    (description.join("\n").trim().to_owned(), params)
}

fn last_segment_is(ty: &Type, name: &str) -> bool {
    match ty {
        Type::Path(p) => p.path.segments.last().is_some_and(|s| s.ident == name),
        _ => false,
    }
}

fn expand(options: Options, function: ItemFn) -> syn::Result<TokenStream2> {
    let sig = &function.sig;
    if sig.asyncness.is_none() {
        return Err(syn::Error::new_spanned(
            sig.fn_token,
            "#[tool] needs an `async fn`",
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(syn::Error::new_spanned(
            &sig.generics,
            "#[tool] functions cannot be generic",
        ));
    }
    let krate: TokenStream2 = match &options.krate {
        Some(path) => path.to_token_stream(),
        None => quote!(::liveagent_tools),
    };
    let private = quote!(#krate::__private);
    let serde_path = LitStr::new(&quote!(#private::serde).to_string(), Span::call_site());
    let schemars_path = LitStr::new(&quote!(#private::schemars).to_string(), Span::call_site());

    let (description, param_docs) = split_doc(&doc_lines(&function.attrs));
    if description.is_empty() {
        return Err(syn::Error::new_spanned(
            &sig.ident,
            "#[tool] needs a doc comment: it is the description the model reads",
        ));
    }
    let fn_name = &sig.ident;
    let tool_name = options.name.clone().unwrap_or_else(|| fn_name.to_string());

    let mut fields = Vec::new();
    let mut call_args = Vec::new();
    let mut inner_params = Vec::new();
    for input in &sig.inputs {
        let FnArg::Typed(pat_type) = input else {
            return Err(syn::Error::new_spanned(
                input,
                "#[tool] functions cannot take `self`",
            ));
        };
        let Pat::Ident(pat_ident) = &*pat_type.pat else {
            return Err(syn::Error::new_spanned(
                &pat_type.pat,
                "#[tool] parameters must be plain names (`city: String`)",
            ));
        };
        let ident = &pat_ident.ident;
        let ty = &pat_type.ty;
        inner_params.push(quote!(#pat_type));
        if last_segment_is(ty, "ToolContext") {
            call_args.push(quote!(__cx.clone()));
            continue;
        }
        let doc = param_docs
            .iter()
            .find(|(n, _)| n == &ident.to_string())
            .map(|(_, d)| d.clone());
        let doc_attr = doc.map(|d| quote!(#[doc = #d]));
        let field = format_ident!("{}", ident.to_string().trim_start_matches("r#"));
        let rename = LitStr::new(&field.to_string(), ident.span());
        fields.push(quote! {
            #doc_attr
            #[serde(rename = #rename)]
            #ident: #ty
        });
        call_args.push(quote!(__args.#ident));
    }

    let returns_result = match &sig.output {
        ReturnType::Type(_, ty) => last_segment_is(ty, "Result"),
        ReturnType::Default => false,
    };
    let output = &sig.output;
    let block = &function.block;
    let vis = &function.vis;
    let attrs: Vec<_> = function.attrs.iter().collect();
    let call = quote!(__tool_fn(#(#call_args),*).await);
    let wrapped = if returns_result {
        call
    } else {
        quote!(::core::result::Result::<_, #krate::ToolError>::Ok(#call))
    };
    let timeout = options
        .timeout_ms
        .map(|ms| quote!(let __tool = __tool.timeout(::core::time::Duration::from_millis(#ms));));
    let args_doc = format!("Arguments of the `{tool_name}` tool.");

    Ok(quote! {
        #(#attrs)*
        #[allow(clippy::unused_async)]
        #vis fn #fn_name() -> #krate::Tool {
            #[doc = #args_doc]
            #[derive(#private::serde::Deserialize, #private::schemars::JsonSchema)]
            #[serde(crate = #serde_path)]
            #[schemars(crate = #schemars_path)]
            #[allow(non_camel_case_types, dead_code)]
            struct __ToolArgs {
                #(#fields,)*
            }

            #[allow(clippy::needless_pass_by_value)]
            async fn __tool_fn(#(#inner_params),*) #output #block

            let __tool = #krate::Tool::with_context(
                #tool_name,
                #description,
                |__args: __ToolArgs, __cx: #krate::ToolContext| async move {
                    let _ = &__cx;
                    #wrapped
                },
            );
            #timeout
            __tool
        }
    })
}

//! Bad `#[task]` attributes are compile errors pointing at the culprit:
//! each `tests/ui/*.rs` must fail with exactly its `.stderr`. (Here rather
//! than in the `tributary` crate, so that trybuild builds only the SDK, not
//! the server the SDK's end-to-end tests need.)

#[test]
fn bad_attributes_are_compile_errors() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}

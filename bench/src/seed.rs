//! The seed workflow (the tutorial's parallel processing, from the
//! examples crate) with its simulated sleeps switched off: what is left is
//! the real work on 10,000 products and the shipping of their contexts.

use tributary::Workflow;
use tributary_examples::parallel_processing::{simulated, workflow};

pub fn workflow_without_sleeps() -> Workflow {
    // Process-wide, and the benchmark never wants the sleeps.
    simulated::set_sleeps(false);
    workflow()
}

use tributary::{task, Context, TaskError};

#[task(id = "f", trigger_rule = "any_success")]
async fn f(_context: &mut Context<serde_json::Value>) -> Result<(), TaskError> {
    Ok(())
}

fn main() {}

use tributary::{task, Context, TaskError};

#[task(id = "f", retries = 3)]
async fn f(_context: &mut Context<serde_json::Value>) -> Result<(), TaskError> {
    Ok(())
}

fn main() {}

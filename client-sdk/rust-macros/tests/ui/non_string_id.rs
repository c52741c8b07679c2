use tributary::{task, Context, TaskError};

#[task(id = 42)]
async fn f(_context: &mut Context<serde_json::Value>) -> Result<(), TaskError> {
    Ok(())
}

fn main() {}

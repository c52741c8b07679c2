use tributary::{task, Context, TaskError};

#[task(id = "f", required_labels = [("gpu", "true"), ("", "x")])]
async fn f(_context: &mut Context<serde_json::Value>) -> Result<(), TaskError> {
    Ok(())
}

fn main() {}

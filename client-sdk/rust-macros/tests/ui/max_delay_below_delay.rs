use tributary::{task, Context, TaskError};

#[task(id = "f", retry_delay_ms = 5000, retry_max_delay_ms = 1000)]
async fn f(_context: &mut Context<serde_json::Value>) -> Result<(), TaskError> {
    Ok(())
}

fn main() {}

use tributary::{task, Context, TaskError};

#[task(id = "f", map_output = "out")]
async fn f(_context: &mut Context<serde_json::Value>) -> Result<(), TaskError> {
    Ok(())
}

fn main() {}

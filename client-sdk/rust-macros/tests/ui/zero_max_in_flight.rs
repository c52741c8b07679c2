use tributary::{task, Context, TaskError};

#[task(id = "f", max_in_flight = 0)]
async fn f(_context: &mut Context<serde_json::Value>) -> Result<(), TaskError> {
    Ok(())
}

fn main() {}

use tributary::{task, Context, TaskError};

#[task(id = "f", dependencies = [generate_data])]
async fn f(_context: &mut Context<serde_json::Value>) -> Result<(), TaskError> {
    Ok(())
}

fn main() {}

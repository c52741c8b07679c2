// Package tributary is the Go SDK of Tributary, a gRPC-native DAG workflow
// orchestrator.
//
// A workflow is a DAG of tasks declared with [Task] and grouped by
// [NewWorkflow]; a [Client] registers it and starts, reads, lists, cancels,
// waits for and watches runs; a [Worker] serves the tasks' handlers over one
// bidirectional gRPC stream to the server.
//
//	func partitionData(ctx context.Context, tc *tributary.Context) error {
//		products, err := tributary.Get[[]Product](tc, "products")
//		if err != nil {
//			return err
//		}
//		return tc.Insert("partition_1", products[:len(products)/3])
//	}
//
//	workflow := tributary.NewWorkflow("parallel_processing",
//		tributary.Task{ID: "generate_data", RetryAttempts: 2, Run: generateData},
//		tributary.Task{ID: "partition_data", Dependencies: []string{"generate_data"}, RetryAttempts: 2, Run: partitionData},
//	)
//
// Context values are JSON; they are kept as JSON text until read and read
// with [encoding/json]'s UseNumber, so integers of any size (beyond 2^53
// and 2^64) survive unchanged.
package tributary

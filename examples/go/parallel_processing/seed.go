package main

// The tutorial's data structures and its first six tasks
// (Cloacina's parallel-processing example), ported from the Rust example's
// seed.rs: same data, same attributes, same log lines. simulatedSleep
// stands in for the tutorial's tokio::time::sleep, so --no-sleep skips the
// simulated work without touching the tasks.

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"time"

	"github.com/tributary-dev/tributary/client-sdk/go/tributary"
)

// Product is one product of the generated catalog.
type Product struct {
	ID       uint32  `json:"id"`
	Name     string  `json:"name"`
	Category string  `json:"category"`
	Price    float64 `json:"price"`
	Stock    uint32  `json:"stock"`
}

// CategoryStats are the totals of one category.
type CategoryStats struct {
	TotalValue   float64 `json:"total_value"`
	TotalStock   uint32  `json:"total_stock"`
	ProductCount uint32  `json:"product_count"`
}

// Generate large dataset
func generateData(ctx context.Context, tc *tributary.Context) error {
	slog.Info("🚀 Generating product dataset")
	// Simulate loading a large dataset
	simulatedSleep(ctx, 500*time.Millisecond)
	const totalProducts = 10000
	products := make([]Product, 0, totalProducts)
	for id := uint32(1); id <= totalProducts; id++ {
		products = append(products, Product{
			ID:       id,
			Name:     fmt.Sprintf("Product %d", id),
			Category: fmt.Sprintf("Category %d", (id%10)+1),
			Price:    math.Mod(float64(id)*1.5, 100.0),
			Stock:    (id * 10) % 1000,
		})
	}
	if err := tc.Insert("total_products", totalProducts); err != nil {
		return err
	}
	if err := tc.Insert("products", products); err != nil {
		return err
	}
	slog.Info(fmt.Sprintf("Generated %d products across 10 categories", totalProducts))
	return nil
}

// Partition data into three chunks
func partitionData(_ context.Context, tc *tributary.Context) error {
	slog.Info("Partitioning product data")
	products, err := tributary.Get[[]Product](tc, "products")
	if err != nil {
		return err
	}
	chunkSize := len(products) / 3
	chunk1, remainder := products[:chunkSize], products[chunkSize:]
	chunk2, chunk3 := remainder[:chunkSize], remainder[chunkSize:]
	if err := tc.Insert("partition_1", chunk1); err != nil {
		return err
	}
	if err := tc.Insert("partition_2", chunk2); err != nil {
		return err
	}
	if err := tc.Insert("partition_3", chunk3); err != nil {
		return err
	}
	slog.Info(fmt.Sprintf("Data partitioned into 3 chunks of %d products each", chunkSize))
	return nil
}

// processPartition is the tutorial's three identical partition tasks, each
// with its own simulated processing time range.
func processPartition(n int, minMS, maxMS int64) tributary.HandlerFunc {
	return func(ctx context.Context, tc *tributary.Context) error {
		products, err := tributary.Get[[]Product](tc, fmt.Sprintf("partition_%d", n))
		if err != nil {
			return err
		}
		slog.Info(fmt.Sprintf("Processing partition %d: %d products", n, len(products)))
		// Simulate CPU-intensive processing
		processingTime := minMS + rand.Int64N(maxMS-minMS)
		simulatedSleep(ctx, time.Duration(processingTime)*time.Millisecond)
		stats := map[string]*CategoryStats{}
		for _, product := range products {
			entry, ok := stats[product.Category]
			if !ok {
				entry = &CategoryStats{}
				stats[product.Category] = entry
			}
			entry.TotalValue += product.Price * float64(product.Stock)
			entry.TotalStock += product.Stock
			entry.ProductCount++
		}
		if err := tc.Insert(fmt.Sprintf("stats_%d", n), stats); err != nil {
			return err
		}
		if err := tc.Insert(fmt.Sprintf("processing_time_%d", n), processingTime); err != nil {
			return err
		}
		slog.Info(fmt.Sprintf("Partition %d complete: processed %d products in %dms", n, len(products), processingTime))
		return nil
	}
}

// Combine results
func combineResults(_ context.Context, tc *tributary.Context) error {
	slog.Info("🔀 Combining results from parallel processing")
	var stats [3]map[string]CategoryStats
	var times [3]uint64
	for index := range 3 {
		var err error
		if stats[index], err = tributary.Get[map[string]CategoryStats](tc, fmt.Sprintf("stats_%d", index+1)); err != nil {
			return err
		}
	}
	for index := range 3 {
		var err error
		if times[index], err = tributary.Get[uint64](tc, fmt.Sprintf("processing_time_%d", index+1)); err != nil {
			return err
		}
	}
	// Combine all stats
	combined := stats[0]
	for _, more := range stats[1:] {
		for category, partial := range more {
			entry := combined[category]
			entry.TotalValue += partial.TotalValue
			entry.TotalStock += partial.TotalStock
			entry.ProductCount += partial.ProductCount
			combined[category] = entry
		}
	}
	// Calculate parallel efficiency
	totalProcessingTime := times[0] + times[1] + times[2]
	maxParallelTime := max(times[0], times[1], times[2])
	parallelEfficiency := float64(totalProcessingTime) / float64(maxParallelTime) * 100.0
	for key, value := range map[string]any{
		"final_stats":                 combined,
		"total_processing_time_ms":    totalProcessingTime,
		"actual_parallel_time_ms":     maxParallelTime,
		"parallel_efficiency_percent": parallelEfficiency,
	} {
		if err := tc.Insert(key, value); err != nil {
			return err
		}
	}
	slog.Info(fmt.Sprintf("Results combined: %.1f%% parallel efficiency", parallelEfficiency))
	return nil
}

// Description is the workflow's description, the same as the Rust
// example's (and parallel_processing.workflow.yaml's), so every language
// registers the same version.
const Description = "Generate 10,000 products, process three partitions in parallel, combine the stats, report and notify."

// PartitionTasks run in parallel.
var PartitionTasks = []string{"process_partition_1", "process_partition_2", "process_partition_3"}

// Workflow is the nine tasks of the tutorial's diagram. The tutorial's
// retry numbers are kept as written, although Tributary counts retries
// after the first attempt where Cloacina counts attempts.
func Workflow() *tributary.Workflow {
	return tributary.NewWorkflow("parallel_processing",
		tributary.Task{ID: "generate_data", RetryAttempts: 2, Run: generateData},
		tributary.Task{ID: "partition_data", Dependencies: []string{"generate_data"}, RetryAttempts: 2, Run: partitionData},
		tributary.Task{ID: "process_partition_1", Dependencies: []string{"partition_data"}, RetryAttempts: 3, RetryDelayMS: 1000, Run: processPartition(1, 1000, 3000)},
		tributary.Task{ID: "process_partition_2", Dependencies: []string{"partition_data"}, RetryAttempts: 3, RetryDelayMS: 1000, Run: processPartition(2, 1500, 4000)},
		tributary.Task{ID: "process_partition_3", Dependencies: []string{"partition_data"}, RetryAttempts: 3, RetryDelayMS: 1000, Run: processPartition(3, 800, 2500)},
		tributary.Task{ID: "combine_results", Dependencies: []string{"process_partition_1", "process_partition_2", "process_partition_3"}, RetryAttempts: 2, Run: combineResults},
		tributary.Task{ID: "generate_report", Dependencies: []string{"combine_results"}, RetryAttempts: 2, Run: generateReport},
		tributary.Task{ID: "send_notifications", Dependencies: []string{"combine_results"}, RetryAttempts: 2, Run: sendNotifications},
		tributary.Task{ID: "cleanup", Dependencies: []string{"generate_report", "send_notifications"}, TriggerRule: "all_done", Run: cleanup},
	).WithDescription(Description)
}

// sleeps is off with --no-sleep.
var sleeps = true

// simulatedSleep is the tutorial's tokio::time::sleep, unless --no-sleep.
func simulatedSleep(ctx context.Context, duration time.Duration) {
	if !sleeps {
		return
	}
	timer := time.NewTimer(duration)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-ctx.Done():
	}
}

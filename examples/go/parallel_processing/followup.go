package main

// The three tasks of the tutorial's diagram whose code it does not show,
// ported from the Rust example's followup.rs: a report of final_stats, a
// notification, and a cleanup of the bulky keys that runs whatever happened
// upstream (trigger rule all_done).

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"

	"github.com/tributary-dev/tributary/client-sdk/go/tributary"
)

// StatsByCategory is final_stats and stats_N, keyed by category name.
type StatsByCategory = map[string]CategoryStats

// Report is what generate_report writes.
type Report struct {
	Categories           int             `json:"categories"`
	TotalProducts        uint32          `json:"total_products"`
	TotalStock           uint64          `json:"total_stock"`
	TotalValue           float64         `json:"total_value"`
	TopCategoriesByValue []CategoryValue `json:"top_categories_by_value"`
}

// CategoryValue is one line of the report's ranking.
type CategoryValue struct {
	Category     string  `json:"category"`
	TotalValue   float64 `json:"total_value"`
	SharePercent float64 `json:"share_percent"`
}

// BulkyKeys are what cleanup removes: the catalog and its partitions.
var BulkyKeys = []string{"products", "partition_1", "partition_2", "partition_3"}

// Summarizes final_stats: totals and the top three categories by value.
func generateReport(_ context.Context, tc *tributary.Context) error {
	slog.Info("📊 Generating report")
	finalStats, err := tributary.Get[StatsByCategory](tc, "final_stats")
	if err != nil {
		return err
	}
	totalProducts, err := tributary.Get[uint32](tc, "total_products")
	if err != nil {
		return err
	}
	names := make([]string, 0, len(finalStats))
	for name := range finalStats {
		names = append(names, name)
	}
	slices.Sort(names)
	var totalValue float64
	var totalStock uint64
	for _, name := range names {
		totalValue += finalStats[name].TotalValue
		totalStock += uint64(finalStats[name].TotalStock)
	}
	slices.SortStableFunc(names, func(a, b string) int {
		return cmp.Or(cmp.Compare(finalStats[b].TotalValue, finalStats[a].TotalValue), cmp.Compare(a, b))
	})
	var top []CategoryValue
	for _, name := range names[:min(3, len(names))] {
		share := 0.0
		if totalValue > 0 {
			share = finalStats[name].TotalValue / totalValue * 100
		}
		top = append(top, CategoryValue{Category: name, TotalValue: finalStats[name].TotalValue, SharePercent: share})
	}
	if len(top) > 0 {
		slog.Info(fmt.Sprintf("Top category by value: %s (%.2f, %.1f%% of %.2f)", top[0].Category, top[0].TotalValue, top[0].SharePercent, totalValue))
	}
	report := Report{
		Categories:           len(finalStats),
		TotalProducts:        totalProducts,
		TotalStock:           totalStock,
		TotalValue:           totalValue,
		TopCategoriesByValue: top,
	}
	if err := tc.Insert("report", report); err != nil {
		return err
	}
	slog.Info(fmt.Sprintf("Report ready: %d products in %d categories", report.TotalProducts, report.Categories))
	return nil
}

// Tells someone the catalog was processed (here: a log line).
func sendNotifications(_ context.Context, tc *tributary.Context) error {
	finalStats, err := tributary.Get[StatsByCategory](tc, "final_stats")
	if err != nil {
		return err
	}
	totalProducts, err := tributary.Get[uint32](tc, "total_products")
	if err != nil {
		return err
	}
	efficiency, err := tributary.Get[float64](tc, "parallel_efficiency_percent")
	if err != nil {
		return err
	}
	slog.Info(fmt.Sprintf("📧 Notification: catalog processed, %d products in %d categories, %.1f%% parallel efficiency",
		totalProducts, len(finalStats), efficiency))
	return tc.Insert("notifications_sent", 1)
}

// Drops the bulky intermediate keys so the run's final context keeps only
// the results. It runs even when something upstream failed, so every key
// may be missing.
func cleanup(_ context.Context, tc *tributary.Context) error {
	slog.Info("🧹 Cleaning up intermediate data")
	removed := 0
	for _, key := range BulkyKeys {
		if _, ok := tc.Remove(key); ok {
			removed++
		}
	}
	if err := tc.Insert("cleanup_done", true); err != nil {
		return err
	}
	slog.Info(fmt.Sprintf("Removed %d intermediate keys", removed))
	return nil
}

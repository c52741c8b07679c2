package tributary

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	pb "github.com/tributary-dev/tributary/client-sdk/go/gen/tributary/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// OverlapPolicy is what a fire does while the run its schedule started
// last is still active.
type OverlapPolicy int32

const (
	// OverlapSkip drops the fire (the default).
	OverlapSkip OverlapPolicy = OverlapPolicy(pb.OverlapPolicy_OVERLAP_POLICY_SKIP)
	// OverlapQueue keeps the fire until the active run ends; at most one
	// waits.
	OverlapQueue OverlapPolicy = OverlapPolicy(pb.OverlapPolicy_OVERLAP_POLICY_QUEUE)
	// OverlapAllow starts a run anyway.
	OverlapAllow OverlapPolicy = OverlapPolicy(pb.OverlapPolicy_OVERLAP_POLICY_ALLOW)
)

// CatchUpPolicy is which fire times missed while the server was down are
// fired.
type CatchUpPolicy int32

const (
	// CatchUpNone fires none of them (the default).
	CatchUpNone CatchUpPolicy = CatchUpPolicy(pb.CatchUpPolicy_CATCH_UP_POLICY_NONE)
	// CatchUpLast fires the latest one only.
	CatchUpLast CatchUpPolicy = CatchUpPolicy(pb.CatchUpPolicy_CATCH_UP_POLICY_LAST)
	// CatchUpAll fires every one, oldest first, but at most the latest
	// MaxCatchUp.
	CatchUpAll CatchUpPolicy = CatchUpPolicy(pb.CatchUpPolicy_CATCH_UP_POLICY_ALL)
)

// NewSchedule is a schedule to create with [Client.CreateSchedule]; see
// docs/schedules.md.
type NewSchedule struct {
	// ScheduleID is its id (the rules of workflow names).
	ScheduleID string
	// WorkflowName is the workflow to start runs of.
	WorkflowName string
	// WorkflowVersion pins a version; empty starts the latest at each fire.
	WorkflowVersion string
	// Cron has 5 fields: minute hour day-of-month month day-of-week.
	Cron string
	// TimeZone is an IANA name; empty means UTC.
	TimeZone string
	// Input is the input context of every run; nil means {}.
	Input any
	// Overlap is the overlap policy (0: skip).
	Overlap OverlapPolicy
	// CatchUp is the catch-up policy (0: none).
	CatchUp CatchUpPolicy
	// MaxCatchUp goes with CatchUpAll only: 1-100.
	MaxCatchUp uint32
	// Paused creates it paused.
	Paused bool
}

// Schedule is a schedule as the server reports it.
type Schedule struct {
	ScheduleID      string
	WorkflowName    string
	WorkflowVersion string
	Cron            string
	TimeZone        string
	// Input is the input context of every run, JSON text of an object.
	Input      json.RawMessage
	Overlap    OverlapPolicy
	CatchUp    CatchUpPolicy
	MaxCatchUp uint32
	Paused     bool
	CreatedAt  time.Time
	// NextFireTimes are the next fire times (none while paused).
	NextFireTimes []time.Time
	// LastFireTime is the fire time of the last run it started (zero
	// before its first), LastRunID that run.
	LastFireTime time.Time
	LastRunID    string
	// QueuedFireTime is a fire time waiting for the active run to end
	// (zero when none waits).
	QueuedFireTime time.Time
	// LastError says why the last fire that should have started a run did
	// not.
	LastError string
	// FiresHandledThrough is the latest fire time the scheduler has dealt
	// with.
	FiresHandledThrough time.Time
}

func timeOf(stamp *timestamppb.Timestamp) time.Time {
	if stamp == nil {
		return time.Time{}
	}
	return stamp.AsTime()
}

func scheduleFromProto(schedule *pb.Schedule) Schedule {
	next := make([]time.Time, 0, len(schedule.GetNextFireTimes()))
	for _, stamp := range schedule.GetNextFireTimes() {
		next = append(next, stamp.AsTime())
	}
	return Schedule{
		ScheduleID:          schedule.GetScheduleId(),
		WorkflowName:        schedule.GetWorkflowName(),
		WorkflowVersion:     schedule.GetWorkflowVersion(),
		Cron:                schedule.GetCron(),
		TimeZone:            schedule.GetTimeZone(),
		Input:               jsonOrEmpty(schedule.GetInputContextJson()),
		Overlap:             OverlapPolicy(schedule.GetOverlapPolicy()),
		CatchUp:             CatchUpPolicy(schedule.GetCatchUpPolicy()),
		MaxCatchUp:          schedule.GetMaxCatchUp(),
		Paused:              schedule.GetPaused(),
		CreatedAt:           timeOf(schedule.GetCreatedAt()),
		NextFireTimes:       next,
		LastFireTime:        timeOf(schedule.GetLastFireTime()),
		LastRunID:           schedule.GetLastRunId(),
		QueuedFireTime:      timeOf(schedule.GetQueuedFireTime()),
		LastError:           schedule.GetLastError(),
		FiresHandledThrough: timeOf(schedule.GetFiresHandledThrough()),
	}
}

// CreateSchedule creates a schedule; it fires from now on. A bad cron
// expression, time zone or policy is INVALID_ARGUMENT, an unknown workflow
// NOT_FOUND, an id in use ALREADY_EXISTS.
func (c *Client) CreateSchedule(ctx context.Context, schedule NewSchedule) (Schedule, error) {
	input := json.RawMessage("{}")
	if schedule.Input != nil {
		encoded, err := encodeJSON(schedule.Input)
		if err != nil {
			return Schedule{}, fmt.Errorf("the input cannot be encoded as JSON: %w", err)
		}
		input = encoded
	}
	response, err := c.schedules.CreateSchedule(ctx, &pb.CreateScheduleRequest{
		ScheduleId:       schedule.ScheduleID,
		WorkflowName:     schedule.WorkflowName,
		WorkflowVersion:  schedule.WorkflowVersion,
		Cron:             schedule.Cron,
		TimeZone:         schedule.TimeZone,
		InputContextJson: string(input),
		OverlapPolicy:    pb.OverlapPolicy(schedule.Overlap),
		CatchUpPolicy:    pb.CatchUpPolicy(schedule.CatchUp),
		MaxCatchUp:       schedule.MaxCatchUp,
		Paused:           schedule.Paused,
	})
	if err != nil {
		return Schedule{}, err
	}
	return scheduleFromProto(response.GetSchedule()), nil
}

// GetSchedule returns a schedule with its next nextFireCount fire times
// (0: 5, at most 100).
func (c *Client) GetSchedule(ctx context.Context, scheduleID string, nextFireCount uint32) (Schedule, error) {
	response, err := c.schedules.GetSchedule(ctx, &pb.GetScheduleRequest{
		ScheduleId:    scheduleID,
		NextFireCount: nextFireCount,
	})
	if err != nil {
		return Schedule{}, err
	}
	return scheduleFromProto(response.GetSchedule()), nil
}

// ListSchedules returns every schedule of the namespace, by id.
func (c *Client) ListSchedules(ctx context.Context) ([]Schedule, error) {
	var schedules []Schedule
	pageToken := ""
	for {
		response, err := c.schedules.ListSchedules(ctx, &pb.ListSchedulesRequest{
			PageSize:  1000,
			PageToken: pageToken,
		})
		if err != nil {
			return nil, err
		}
		for _, schedule := range response.GetSchedules() {
			schedules = append(schedules, scheduleFromProto(schedule))
		}
		if response.GetNextPageToken() == "" {
			return schedules, nil
		}
		pageToken = response.GetNextPageToken()
	}
}

// PauseSchedule pauses a schedule: fire times that pass while it is paused
// never fire.
func (c *Client) PauseSchedule(ctx context.Context, scheduleID string) (Schedule, error) {
	response, err := c.schedules.PauseSchedule(ctx, &pb.PauseScheduleRequest{ScheduleId: scheduleID})
	if err != nil {
		return Schedule{}, err
	}
	return scheduleFromProto(response.GetSchedule()), nil
}

// ResumeSchedule resumes a paused schedule from now on (the paused period
// is not caught up).
func (c *Client) ResumeSchedule(ctx context.Context, scheduleID string) (Schedule, error) {
	response, err := c.schedules.ResumeSchedule(ctx, &pb.ResumeScheduleRequest{ScheduleId: scheduleID})
	if err != nil {
		return Schedule{}, err
	}
	return scheduleFromProto(response.GetSchedule()), nil
}

// DeleteSchedule deletes a schedule; the runs it started stay.
func (c *Client) DeleteSchedule(ctx context.Context, scheduleID string) error {
	_, err := c.schedules.DeleteSchedule(ctx, &pb.DeleteScheduleRequest{ScheduleId: scheduleID})
	return err
}

// Command rollupbench measures the rollup on this machine, in one run, against the machine's
// own limits:
//
//  1. it starts a private PostgreSQL and Redis (internal/devstack) and an in-process
//     Kafka-protocol broker (kfake) that stores the records, runs `abacusd migrate`, and creates
//     the tenants of the freshness phase through an admin-only abacusd;
//  2. phase "consumer": it produces a fixed workload (by default 1,000,000 events of 20
//     tenants, 1 % of them duplicates and 1 % late) to the event topic with the event log's own
//     producer, exactly as ingest writes it, and only then starts `abacusd serve --roles=rollup`.
//     It follows the consumer's committed offsets in consumer_offsets every 10 ms and reports
//     the events of the records applied from the first committed transaction it sees to the
//     moment every record is applied, over that time;
//  3. phase "raw COPY": it reads the topic back, decodes every record as the consumer does, and
//     copies each partition's rows with one pgx CopyFrom into a copy of events with its index
//     and into one without, timing only the COPY statements: the machine's limit for getting the
//     same rows into PostgreSQL. The consumer's throughput is reported as a share of both;
//  4. it checks that the sum of rollups_1m.event_count equals the distinct events produced;
//  5. phase "freshness": `abacusd serve --roles=ingest,query,rollup` under a background load
//     from abacus-loadgen at a fixed rate, while a probe tenant sends one event every 100 ms
//     through Ingest, each in a minute of its own, and GetTimeSeries is polled every 5 ms
//     until it counts the event. It reports the time from Ingest's acknowledgement to the
//     first answer that counts the event.
//
// It prints a table of the figures next to the targets, marked met or not met — reported,
// never asserted — and with --json-out writes them as JSON. It also reports the CPU time
// abacusd, PostgreSQL and its own process (the broker) took while the consumer ran, read from
// /proc, to show where the time goes.
//
// It builds nothing: `make bench` builds bin/abacusd and bin/abacus-loadgen first and passes
// their paths. See bench/README.md.
package main

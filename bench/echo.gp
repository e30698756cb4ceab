# Echo workload: throughput and tail latency against K pingpong clients.
load 'bench/common.gp'
set logscale x
set xlabel 'concurrent pingpong clients (K)'
set format y '%.0s%c'

set output outbase.'-throughput'.ext
set title "Echo throughput, 64-byte messages (median)\n".machine
set ylabel 'messages per second'
set yrange [0:*]
plot for [s in series] datafile every ::1 using (strcol(1) eq s ? $2 : NaN):3 title s

set output outbase.'-latency'.ext
set title "Echo round-trip latency p99 (median)\n".machine
set ylabel 'p99 round trip, microseconds'
set logscale y
set yrange [*:*]
set format y '%g'
plot for [s in series] datafile every ::1 using (strcol(1) eq s ? $2 : NaN):5 title s

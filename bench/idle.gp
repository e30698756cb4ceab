# Idle scaling: latency of one active client against the number of idle
# connections the server also watches. select/poll scan every descriptor on
# every call, so their line climbs; epoll reports only the ready ones, so its
# line stays flat. Both axes are logarithmic: a flat line is O(1); one that
# rises a decade for each decade of N is O(N).
load 'bench/common.gp'
set logscale xy
set xlabel 'idle connections beside the active client (N)'
set format y '%g'

set output outbase.'-latency'.ext
set title "One pingpong client beside N idle connections: p50 round trip (median)\n".machine
set ylabel 'p50 round trip, microseconds'
plot for [s in series] datafile every ::1 using (strcol(1) eq s ? $2 : NaN):3 title s

set output outbase.'-latency-p99'.ext
set title "One pingpong client beside N idle connections: p99 round trip (median)\n".machine
set ylabel 'p99 round trip, microseconds'
plot for [s in series] datafile every ::1 using (strcol(1) eq s ? $2 : NaN):4 title s

# Chat fan-out: lines delivered per second for rooms of different sizes,
# the stage-09 room beside Redis PUBLISH/SUBSCRIBE.
load 'bench/common.gp'
set output outbase.'-fanout'.ext
set logscale x
set xlabel 'room members'
set ylabel 'deliveries per second'
set yrange [0:*]
set format y '%.0s%c'
set title "Chat fan-out, 64-byte lines, several in flight (median)\n".machine
plot for [s in series] datafile every ::1 using (strcol(1) eq s ? $2 : NaN):3 title s

# Accept rate: connections per second (connect, first answer, reset).
load 'bench/common.gp'
set output outbase.ext
set title "Accepted connections per second, 64 connect loops (median)\n".machine
set ylabel 'connections per second'
set yrange [0:*]
set format y '%.0s%c'
set style fill solid 0.6 border -1
set boxwidth 0.6
set xtics rotate by -30
unset key
plot datafile every ::1 using 0:2:xtic(1) with boxes, \
     '' every ::1 using 0:2:(sprintf('%.0f', $2)) with labels offset 0,0.8

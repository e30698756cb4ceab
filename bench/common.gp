# The look every bench plot shares. bench/run sets, with gnuplot -e:
#   datafile  the CSV to plot (first line: column names)
#   outbase   output path without extension
#   term      'svg' or 'png'
#   series    space-separated names in column 1 to draw as lines
#   machine   one line naming the machine, shown under each title
if (term eq 'png') {
    set terminal pngcairo size 960,600 font 'Sans,11' noenhanced
} else {
    set terminal svg size 960,600 dynamic font 'Sans,11' noenhanced
}
ext = (term eq 'png') ? '.png' : '.svg'
set datafile separator ','
set grid
set key outside right top
set style data linespoints
set pointsize 1.2

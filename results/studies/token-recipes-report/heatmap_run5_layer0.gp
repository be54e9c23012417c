set terminal pngcairo size 620,400 font "sans,10" noenhanced
set output "results/studies/token-recipes-report/heatmap_run5_layer0.png"
set title "top2-8-half-lossfree seed=1: layer 0"
set xlabel "expert"
set cblabel "mean routing weight"
set palette defined (0 "white", 1 "#fdd49e", 2 "#ef6548", 3 "#7f0000")
set cbrange [0:*]
set view map
set size ratio -1
set xrange [-0.5:7.5]
set yrange [-0.5:5.5] reverse
set xtics ("0" 0, "1" 1, "2" 2, "3" 3, "4" 4, "5" 5, "6" 6, "7" 7)
set ytics ("books" 0, "code_python" 1, "legal" 2, "religious" 3, "speeches" 4, "tech_docs" 5)
plot "results/studies/token-recipes-report/heatmap_run5_layer0.dat" using 1:2:3 with image notitle

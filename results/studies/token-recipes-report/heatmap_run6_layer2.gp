set terminal pngcairo size 1580,400 font "sans,10" noenhanced
set output "results/studies/token-recipes-report/heatmap_run6_layer2.png"
set title "fine32-k3-shared1 seed=1: layer 2"
set xlabel "expert"
set cblabel "mean routing weight"
set palette defined (0 "white", 1 "#fdd49e", 2 "#ef6548", 3 "#7f0000")
set cbrange [0:*]
set view map
set size ratio -1
set xrange [-0.5:31.5]
set yrange [-0.5:5.5] reverse
set xtics ("0" 0, "1" 1, "2" 2, "3" 3, "4" 4, "5" 5, "6" 6, "7" 7, "8" 8, "9" 9, "10" 10, "11" 11, "12" 12, "13" 13, "14" 14, "15" 15, "16" 16, "17" 17, "18" 18, "19" 19, "20" 20, "21" 21, "22" 22, "23" 23, "24" 24, "25" 25, "26" 26, "27" 27, "28" 28, "29" 29, "30" 30, "31" 31)
set ytics ("books" 0, "code_python" 1, "legal" 2, "religious" 3, "speeches" 4, "tech_docs" 5)
plot "results/studies/token-recipes-report/heatmap_run6_layer2.dat" using 1:2:3 with image notitle

set terminal pngcairo size 620,640 font "sans,10" noenhanced
set output "results/studies/debian12-report/heatmap_run21_layer0.png"
set title "ec-token-8 late-upcycling random seed=1: layer 0"
set xlabel "expert"
set cblabel "mean routing weight"
set palette defined (0 "white", 1 "#fdd49e", 2 "#ef6548", 3 "#7f0000")
set cbrange [0:*]
set view map
set size ratio -1
set xrange [-0.5:7.5]
set yrange [-0.5:11.5] reverse
set xtics ("0" 0, "1" 1, "2" 2, "3" 3, "4" 4, "5" 5, "6" 6, "7" 7)
set ytics ("books" 0, "code_c" 1, "code_js" 2, "code_python" 3, "dictionary" 4, "email" 5, "general_prose" 6, "legal" 7, "news" 8, "religious" 9, "speeches" 10, "tech_docs" 11)
plot "results/studies/debian12-report/heatmap_run21_layer0.dat" using 1:2:3 with image notitle

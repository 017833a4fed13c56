#version 450
// Arrays of arrays (of scalars, vectors, structs) in std140 and std430.
layout(local_size_x = 4, local_size_y = 4, local_size_z = 4) in;
struct Cell { vec2 pos; float weights[2][3]; };
layout(std140, binding = 0) uniform Grid { float g[2][3]; vec3 v[2][2]; Cell cells[2][2]; } grid;
layout(std430, binding = 1) buffer Tiles { ivec2 t[3][4]; Cell cells[2]; float rows[][8]; } tiles;
void main() { tiles.rows[0][1] = grid.g[1][2] + grid.cells[1][0].weights[1][2] + float(tiles.t[2][3].x); }

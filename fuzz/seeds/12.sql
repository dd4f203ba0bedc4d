SELECT 1 #--'
 0, s FROM secret --' FROM allowed